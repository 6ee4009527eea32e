"""pytest-nvme-ai: qualify SSDs for NVMe-offloaded AI and gate performance regressions."""
from __future__ import annotations

from pytest_nvme_ai.core.schema import SCHEMA_VERSION

__version__ = "0.1.0"

__all__ = ["SCHEMA_VERSION", "__version__"]
