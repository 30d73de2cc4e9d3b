"""The SBOM gate: the built image's CycloneDX document, enriched with its models."""
