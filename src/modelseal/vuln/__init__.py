"""Vulnerability gates (Trivy, pip-audit) and the one policy that judges them both."""
