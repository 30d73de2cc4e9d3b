"""``python -m modelseal``."""

from modelseal._cli import entry

entry()
