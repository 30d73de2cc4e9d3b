"""No pydantic plugins: imported by :mod:`modelseal.policy` before its first model class."""

import os
import sys
import types

# Third-party pydantic plugins (found through entry points) would observe every policy
# validation; a security tool's policy check has no use for them, and the entry-point scan
# costs ~20 ms of every start. Set before pydantic looks at it (on the first model class).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _no_plugins() -> tuple[()]:
    return ()


def _without_pydantic_plugins() -> None:
    """Stand in for pydantic's plugin loader, which pydantic imports with its first model class.

    Even with plugins switched off, importing the loader imports ``importlib.metadata`` (and
    with it email, csv, zipfile …): ~15 ms of every policy read, a tenth of a small
    ``models scan``. Its one name pydantic uses, ``get_plugins``, answers "no plugins" here,
    whatever the environment says (tests/test_cli_startup.py checks that pydantic still
    imports nothing else from it). Not when pydantic has loaded it already.
    """
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        stub = types.ModuleType(name, "modelseal: pydantic plugins are never loaded.")
        stub.__dict__["get_plugins"] = _no_plugins
        sys.modules[name] = stub


_without_pydantic_plugins()
