"""Baselines and the gate: where baselines live, which one, whether to save, how much change counts."""
from __future__ import annotations

from pytest_nvme_ai.core.names import check_name
from pytest_nvme_ai.run.settings.base import Setting, boolean, percent, positive_int, text

ORDER = 20


def baseline_name(v: str) -> str:
    """A baseline name becomes <baseline dir>/<name>.json: a name, never a path."""
    name = check_name(str(v).strip(), "baseline name", "to keep baselines elsewhere, use --nvme-ai-baseline-dir")
    if name.endswith(".json"):
        raise ValueError(f"baseline name {name!r} ends in .json: give the name alone, the file is <baseline dir>/"
                         f"{name.removesuffix('.json')}.json")
    return name


SETTINGS = (
    Setting("baseline_dir", "directory of stored baselines (one JSON file per baseline name). Default: baselines/.",
            text, "baselines", metavar="DIR"),
    Setting("baseline_name", "baseline to compare with / save to. Default: a slug of each target's device fingerprint.",
            baseline_name, None, metavar="NAME"),
    Setting("save_baseline", "write/refresh baseline entries from this run's passing tests.", boolean, False,
            kind="flag"),
    Setting("tolerance", "allowed change in percent before a metric counts as changed (default 10). "
            "The nvme_ai(tolerance=...) marker overrides it per test.", percent, 10.0, metavar="PCT"),
    Setting("baseline_window", "sessions kept per baseline entry (default 10): --nvme-ai-save-baseline appends this "
            "session and drops the oldest beyond N; the gate uses the drift between them once there are 5.",
            positive_int, 10, metavar="N"),
    Setting("strict", "treat a baseline from a different device fingerprint as an error instead of 'incomparable', "
            "and fail a test whose gate (window or A/B) reads 'unknown'.",
            boolean, False, kind="flag"),
)
