"""``python -m modelseal``."""

from modelseal._cli import main

raise SystemExit(main())
