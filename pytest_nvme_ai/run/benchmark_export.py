"""Time-valued metrics in pytest-benchmark's JSON format.

pytest-benchmark can only gate time, but its `compare` tooling, histograms and
CSV export are good and widely used. Writing our latency metrics (seconds) as
its JSON lets users keep that tooling: `pytest-benchmark compare a.json b.json`.
Statistics come from pytest-benchmark's own `Stats`, not a copy of them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from pytest_nvme_ai.core.fsutil import atomic_write_json

# unit -> factor to seconds
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _bench(test: Mapping[str, Any], name: str, metric: Mapping[str, Any], several_targets: bool) -> dict[str, Any]:
    from pytest_benchmark.stats import Stats

    factor = TIME_UNITS[metric["unit"]]
    stats = Stats()
    for s in metric.get("samples") or [metric["value"]]:
        stats.update(float(s) * factor)
    data = stats.as_dict()
    data["data"] = list(stats.data)
    data["iterations"] = 1  # each sample is one whole measurement, not a timed loop of many
    base = test["key"].split("::")[-1]  # target-free, so runs on two drives line up
    # ... but within one run on several targets each needs its own name (compare matches on fullname)
    where = f"@{test.get('target_label')}" if several_targets else ""
    return {
        "group": f"{test.get('suite')}:{name}",
        "name": f"{base}{where}::{name}",
        "fullname": f"{test['key']}{where}::{name}",   # key is target-independent: runs on two drives compare
        "params": {k: str(v) for k, v in (test.get("params") or {}).items()},
        "param": None,
        "extra_info": {"nvme_ai_metric": name, "unit": metric["unit"], "verdict": test.get("verdict"),
                       "target": test.get("target")},
        "options": {"min_rounds": len(data["data"]), "timer": "nvme_ai", "disable_gc": False, "warmup": False},
        "stats": data,
    }


def to_benchmark_json(results: Mapping[str, Any]) -> dict[str, Any]:
    from pytest_benchmark import __version__
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    benches = []
    several = len(results.get("targets") or []) > 1
    for test in results.get("tests", []):
        for name, m in (test.get("metrics") or {}).items():
            if m.get("unit") in TIME_UNITS:
                benches.append(_bench(test, name, m, several))
    return {
        "machine_info": pytest_benchmark_generate_machine_info(),
        "commit_info": (results.get("run") or {}).get("commit") or {},
        "benchmarks": benches,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": __version__,
    }


def write_benchmark_json(path: Path, results: Mapping[str, Any]) -> Path:
    atomic_write_json(Path(path), to_benchmark_json(results))
    return Path(path)
