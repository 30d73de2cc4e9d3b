"""modelseal: seal ML model-serving container images in CI."""

__version__ = "0.1.0"
#: What ``modelseal --version`` prints.
VERSION_TEXT = f"modelseal {__version__}"
