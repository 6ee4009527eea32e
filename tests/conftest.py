from __future__ import annotations

import os
from pathlib import Path

pytest_plugins = ["pytester"]

# pytester points HOME at a temp dir; without this, torch would look for its JIT extension cache
# there and recompile DeepSpeed's AsyncIO op (minutes) inside every pytester run that uses it.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))

# pytester's in-process runs restore sys.modules afterwards, so a library first imported inside one
# is imported again by the next. SQLAlchemy's compiled (Cython) parts do not survive that: the second
# copy fails with "'InternalTraversal' object is not callable". Importing it here, before any
# snapshot, keeps one copy for the whole test session.
import sqlalchemy  # noqa: E402,F401
