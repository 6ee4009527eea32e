from __future__ import annotations

import os
from pathlib import Path

pytest_plugins = ["pytester"]



def _torch_default_extensions_dir() -> str:
    """torch's own default JIT-extension cache (torch.utils.cpp_extension): <XDG cache or ~/.cache>/
    torch_extensions/py<major><minor>_<cpu|cuXYZ>. The same place setup (scripts/setup.sh), README command 1
    and the benchmarks use, so a machine builds each DeepSpeed op once, not once per directory."""
    import sys

    try:
        import torch
    except ImportError:  # no torch: nothing will build an op; any path will do
        return str(Path.home() / ".cache" / "torch_extensions")
    cu = "cpu" if torch.version.cuda is None else "cu" + torch.version.cuda.replace(".", "")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return str(cache / "torch_extensions" / f"py{sys.version_info.major}{sys.version_info.minor}_{cu}")


# pytester points HOME at a temp dir; without pinning it here, torch would look for its JIT extension cache
# there and recompile DeepSpeed's AsyncIO op (minutes) inside every pytester run that uses it.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", _torch_default_extensions_dir())

# pytester's in-process runs restore sys.modules afterwards, so a library first imported inside one
# is imported again by the next. SQLAlchemy's compiled (Cython) parts do not survive that: the second
# copy fails with "'InternalTraversal' object is not callable". Importing it here, before any
# snapshot, keeps one copy for the whole test session.
import sqlalchemy  # noqa: E402,F401

# A shell that starts a job in the background without job control (nohup, `cmd &` in a script, some CI
# launchers) leaves SIGINT ignored, and an ignored signal is inherited across exec: the fault tests'
# Ctrl-C would then never reach their pytester runs and children. Give this process, and so every
# child it starts, the interactive default back, as a user at a terminal has it.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
