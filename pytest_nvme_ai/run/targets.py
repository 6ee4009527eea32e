"""Moved to `pytest_nvme_ai.core.targets` (measure/ needs the target's plain data without importing run/).

This alias keeps branches written against the first layout working; new code imports core.targets."""
from __future__ import annotations

from pytest_nvme_ai.core.targets import Target, TargetError, make_labels, strip_target_id, validate_target_dir

__all__ = ["Target", "TargetError", "make_labels", "strip_target_id", "validate_target_dir"]
