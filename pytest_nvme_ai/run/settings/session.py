"""Where the run points and how long it takes: targets, profile, repeats, timeouts, output files."""
from __future__ import annotations

from pytest_nvme_ai.core.profiles import PROFILES  # one source of the profile names
from pytest_nvme_ai.run.settings.base import Setting, positive_int, text

ORDER = 10


def _profile(v: str) -> str:
    if v not in PROFILES:
        raise ValueError(f"unknown profile {v!r}; choose one of {', '.join(PROFILES)}")
    return v


SETTINGS = (
    Setting("target", "directory on the device under test (repeatable; tests are parametrized over targets). "
            "Default: a directory under pytest's basetemp, reported as whatever device backs it. "
            "Env NVME_AI_TARGET takes several separated by ':'.", text, [], kind="list", metavar="DIR"),
    Setting("profile", "sizes and durations: quick (CI, no GPU/NVMe), standard (nightly on a runner), "
            "full (the seed study's matrix). Default: quick.", _profile, "quick", metavar="{quick,standard,full}"),
    Setting("report_dir", "write DIR/<run-id>/results.json and index.html, and point DIR/latest at the newest run. "
            "Default: reports/ under the rootdir.", text, "reports", metavar="DIR"),
    Setting("repeat", "repetitions per measurement (default: the profile's). The marker's repeat= overrides it.",
            positive_int, None, metavar="N"),
    Setting("benchmark_json", "also write time-valued metrics as a pytest-benchmark JSON file "
            "(so `pytest-benchmark compare` works on them).", text, None, metavar="PATH"),
    Setting("timeout", "seconds before a child measurement (fio, a ZeRO-Inference run) is killed and "
            "recorded as 'timeout'. Default: the profile's.", positive_int, None, metavar="SECONDS"),
)
