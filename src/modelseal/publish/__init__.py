"""Publishing sealed images: pushing to OCI registries, signatures and attestations as referrers."""
