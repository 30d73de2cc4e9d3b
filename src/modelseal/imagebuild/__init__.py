"""Reproducible BuildKit builds: the normalized context, the Dockerfile, and the build gate."""
