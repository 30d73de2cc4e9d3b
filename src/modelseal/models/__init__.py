"""The model-artifact gate: hash pins, format detection, pickle scanning, structure checks."""
