from __future__ import annotations

import os
from pathlib import Path

pytest_plugins = ["pytester"]

# pytester points HOME at a temp dir; without this, torch would look for its JIT extension cache
# there and recompile DeepSpeed's AsyncIO op (minutes) inside every pytester run that uses it.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
