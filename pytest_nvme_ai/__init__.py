"""pytest-nvme-ai: qualify SSDs for NVMe-offloaded AI and gate performance regressions."""
from __future__ import annotations

__version__ = "0.1.0"

# results.json and baseline files carry this; readers refuse newer versions.
SCHEMA_VERSION = 1
