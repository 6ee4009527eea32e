"""Synthetic results.json documents for the history tests and benchmarks/history_scale.py.

Shaped like a real run's file (run, environment, targets, tests with metrics and samples), with the
values chosen by the caller so a step in a series is known exactly.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
METRICS = (("bw", "B/s", "higher", True), ("iops", "IO/s", "higher", False),
           ("clat_p50", "ns", "lower", False), ("clat_p99", "ns", "lower", False))


def started_at(i: int) -> str:
    return (T0 + timedelta(hours=i)).isoformat()


def device(firmware: str = "E2MU200", gen: int = 4) -> dict[str, Any]:
    return {"kind": "nvme", "model": "Micron 7450", "serial": "S123", "firmware": firmware,
            "pcie": {"current_gen": gen, "current_width": 4, "max_gen": 4, "max_width": 4},
            "fs_type": "ext4",
            "fingerprint": {"kind": "nvme", "model": "Micron 7450", "firmware": firmware, "pcie_gen": gen,
                            "pcie_width": 4, "fs_type": "ext4"}}


def run_doc(run_id: str, i: int, *, n_tests: int = 1, value: Callable[[int, int], float] | None = None,
            firmware: str = "E2MU200", gen: int = 4, node: str = "runner-a", deepspeed: str = "0.19.8",
            commit: str = "c0ffee", samples: int = 3, status: str | None = None, exitstatus: int = 0,
            rng: random.Random | None = None) -> dict[str, Any]:
    """Run number `i` (one hour apart); `value(i, test_index)` gives the bw median of each test."""
    rng = rng or random.Random(i)
    value = value or (lambda _i, _t: 1.0e9)
    tests = []
    for t in range(n_tests):
        metrics = {}
        for name, unit, better, gated in METRICS:
            base = value(i, t) if name == "bw" else {"iops": 1e4, "clat_p50": 1e5, "clat_p99": 3e5}[name]
            xs = [base * (1 + rng.gauss(0, 0.01)) for _ in range(samples)]
            metrics[name] = {"value": sorted(xs)[len(xs) // 2], "unit": unit, "better": better, "samples": xs,
                             "gated": gated}
        tests.append({"nodeid": f"suites/test_seq_read.py::test_seq_read[case{t}-@nvme0]",
                      "key": f"suites/test_seq_read.py::test_seq_read[case{t}]", "suite": "seq_read",
                      "params": {"bs": "1M", "case": t}, "target": "/mnt/nvme0", "target_label": "nvme0",
                      "outcome": "passed", "duration": 1.0, "metrics": metrics, "verdict": "pass"})
    run: dict[str, Any] = {"id": run_id, "started": started_at(i), "finished": started_at(i), "profile": "quick",
                           "commit": {"id": f"{commit}{i:06d}", "branch": "main", "dirty": False},
                           "argv": ["suites/"], "exitstatus": exitstatus, "plugin_version": "0.1.0"}
    if status is not None:
        run["status"] = status
    return {"schema_version": 1, "run": run,
            "environment": {"kernel": "Linux 6.1.0", "node": node,
                            "versions": {"python": "3.11.7", "fio": "3.33", "deepspeed": deepspeed, "torch": "2.13.0"}},
            "targets": [{"path": "/mnt/nvme0", "label": "nvme0", "embedded": False, "device": device(firmware, gen)}],
            "tests": tests}
