"""Extension points by file: a package's sibling modules, found and ordered.

The metric catalog, the report's suite sections and the plugin's settings are each a package whose
modules declare their part (a `METRICS` dict, a `SECTION`, a `SETTINGS` tuple). A new concern adds a
new module there instead of editing one shared table, so parallel work does not collide on one hub.
Modules are imported in (ORDER, name) order; ORDER is an int a module may set (default 1000), so the
page and `--help` keep a stable, chosen order.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

DEFAULT_ORDER = 1000


def submodules(package: str, attr: str) -> list[ModuleType]:
    """The package's direct modules that define `attr`, imported, sorted by (ORDER, name).

    Names starting with '_' are skipped (private helpers). Called from the package's own __init__,
    which is already in sys.modules with its __path__ set, so the import is not circular."""
    pkg = importlib.import_module(package)
    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if hasattr(mod, attr):
            found.append(mod)
    return sorted(found, key=lambda m: (int(getattr(m, "ORDER", DEFAULT_ORDER)), m.__name__))
