"""results.json -> the rows the store keeps. Pure functions: no database, easy to test.

Every read goes through `.get` with a default: a results.json from an older plugin, an interrupted
run or a hand-edited file must still import, with what it has.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pytest_nvme_ai.core.redact import redact_argv

INTERRUPTED_EXIT = 2   # pytest.ExitCode.INTERRUPTED (Ctrl-C, SIGTERM): such a run must never look complete


@dataclass(frozen=True)
class RunRows:
    run_id: str
    run: dict[str, Any]
    targets: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    metrics: list[dict[str, Any]]


def _map(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _dumps(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def utc_iso(raw: Any) -> str | None:
    """ISO 8601 in UTC with a fixed shape, so text order is time order in every database."""
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


def fingerprint_text(fp: Any) -> str:
    """kind-model-firmware-genNxW-fs, lower case: what `nvme-ai history --fingerprint` matches against."""
    fp = _map(fp)
    gen, width = fp.get("pcie_gen"), fp.get("pcie_width")
    parts = [fp.get("kind"), fp.get("model"), fp.get("firmware"),
             f"gen{gen}x{width}" if gen or width else None, fp.get("fs_type")]
    text = "-".join(re.sub(r"\s+", "_", str(p).strip()) for p in parts if p not in (None, ""))
    return text.lower() or "unknown"


def pcie_link(pcie: Any) -> str | None:
    p = _map(pcie)
    gen, width = p.get("current_gen"), p.get("current_width")
    if gen is None and width is None:
        return None
    return f"Gen{gen or '?'} x{width or '?'}"


def run_status(run: Mapping[str, Any]) -> str:
    """`run.status` when the run wrote one; otherwise an interrupted exit code still says so."""
    status = run.get("status")
    if isinstance(status, str) and status:
        return status
    if isinstance(status, Mapping) and status.get("state"):
        return str(status["state"])
    return "interrupted" if run.get("exitstatus") == INTERRUPTED_EXIT else "complete"


def ab_series_key(test: Mapping[str, Any], key: str) -> str:
    """An A/B test is its own series, keyed by its arms (core.arms.series_key, results.json `tests[].ab.series`):
    arm B of an A/B session (capped, or measured beside another build) must not join the plain test's trend."""
    series = _map(test.get("ab")).get("series")
    return f"{key} {{ab {series}}}" if isinstance(series, str) and series else key


def flatten(data: Mapping[str, Any], *, source: str | None = None) -> RunRows:
    run = _map(data.get("run"))
    run_id = str(run.get("id") or "")
    if not run_id:
        raise ValueError("results.json has no run.id: it cannot be stored (run ids make import idempotent)")
    started = utc_iso(run.get("started")) or utc_iso(run.get("finished"))
    if started is None:
        raise ValueError(f"run {run_id} has no valid run.started time: it cannot be placed in a series")
    env = _map(data.get("environment"))
    commit = _map(run.get("commit"))
    runner = str(env.get("node") or "unknown")
    versions = dict(_map(env.get("versions")))
    run_row = {
        "run_id": run_id, "started": started, "finished": utc_iso(run.get("finished")),
        "status": run_status(run), "exitstatus": run.get("exitstatus") if isinstance(run.get("exitstatus"), int) else None,
        "profile": run.get("profile"), "runner": runner,
        "commit_id": commit.get("id"), "commit_branch": commit.get("branch"),
        "commit_dirty": bool(commit["dirty"]) if "dirty" in commit else None,
        "kernel": env.get("kernel"), "plugin_version": run.get("plugin_version"),
        "versions_json": _dumps(versions), "environment_json": _dumps(env),
        "argv_json": _dumps(redact_argv(_list(run.get("argv")))), "source": source,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
    }
    target_rows: list[dict[str, Any]] = []
    by_label: dict[str, dict[str, Any]] = {}
    by_path: dict[str, dict[str, Any]] = {}
    for t in _list(data.get("targets")):
        t = _map(t)
        dev = _map(t.get("device"))
        fp = _map(dev.get("fingerprint"))
        label = str(t.get("label") or t.get("path") or f"target{len(target_rows)}")
        row: dict[str, Any] = {
            "run_id": run_id, "label": label,
            "path": t.get("path"), "kind": dev.get("kind"),
            "drive_model": str(fp.get("model") or dev.get("model") or dev.get("name") or "unknown"),
            "serial": dev.get("serial"), "firmware": dev.get("firmware"), "pcie_link": pcie_link(dev.get("pcie")),
            "fingerprint": fingerprint_text(fp) if fp else "unknown", "device_json": _dumps(dev),
        }
        if label in by_label:
            continue  # a duplicated label in a hand-edited file: keep the first, like the report does
        target_rows.append(row)
        by_label[label] = row
        if t.get("path"):
            by_path[str(t["path"])] = row
    unknown = {"drive_model": "unknown", "fingerprint": "unknown"}
    test_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    for i, t in enumerate(_list(data.get("tests"))):
        t = _map(t)
        tlabel = t.get("target_label")
        tgt: dict[str, Any] | None = (by_label.get(str(tlabel)) if tlabel is not None
                                      else by_path.get(str(t.get("target"))))
        if tgt is None and len(target_rows) == 1:
            tgt = target_rows[0]
        tgt = tgt or dict(unknown)
        key = ab_series_key(t, str(t.get("key") or t.get("nodeid") or f"test {i}"))
        test_rows.append({
            "run_id": run_id, "test_index": i, "nodeid": str(t.get("nodeid") or key), "test_key": key,
            "suite": t.get("suite"), "target_label": tgt.get("label", tlabel), "outcome": t.get("outcome"),
            "verdict": t.get("verdict"), "duration": _num(t.get("duration")), "params_json": _dumps(t.get("params") or {}),
        })
        for name, m in _map(t.get("metrics")).items():
            m = _map(m)
            samples = [s for s in (_num(x) for x in _list(m.get("samples"))) if s is not None]
            metric_rows.append({
                "run_id": run_id, "test_index": i, "name": str(name), "test_key": key,
                "drive_model": tgt["drive_model"], "runner": runner, "fingerprint": tgt["fingerprint"],
                "started": started, "value": _num(m.get("value")), "unit": m.get("unit"),
                "better": m.get("better"), "gated": bool(m["gated"]) if "gated" in m else None,
                "samples_json": _dumps(samples),
            })
    return RunRows(run_id, run_row, target_rows, test_rows, metric_rows)
