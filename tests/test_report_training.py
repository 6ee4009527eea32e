"""The training and write sections of the run page, from a small results.json."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_nvme_ai.report import render_run


def metric(samples: list[float], unit: str, better: str = "lower") -> dict[str, Any]:
    return {"value": sorted(samples)[len(samples) // 2], "unit": unit, "better": better, "samples": samples}


def step_metrics(prefix: str, step: float, read: float, write: float) -> dict[str, Any]:
    return {f"{prefix}step_time": metric([step], "s"), f"{prefix}train_throughput": metric([128 / step], "tokens/s"),
            f"{prefix}target_read_bytes": metric([read], "B"), f"{prefix}target_write_bytes": metric([write], "B"),
            f"{prefix}target_read_bw": metric([read / step], "B/s"), f"{prefix}target_write_bw": metric([write / step], "B/s")}


PARAMS = {"model": "opt-tiny", "batch_size": 2, "seq_len": 64, "offload": "nvme", "pipeline_read": False,
          "pipeline_write": False}
DATA: dict[str, Any] = {"schema_version": 1, "tests": [
    {"nodeid": "suites/test_zero_infinity.py::test_zero_infinity[@default-opt-tiny-bs2-s64-nvme]",
     "suite": "zero_infinity", "outcome": "passed", "verdict": "new", "params": PARAMS,
     "metrics": {**step_metrics("", 0.9, 2.6e8, 2.6e8), "step_io_bound": metric([0.45], "s"),
                 "step_io_fraction": metric([0.5], "ratio", "higher")},
     "extra": {"run_outcome": "ok", "loss_curve": [10.86, 10.24, 9.70, 9.16]}},
    {"nodeid": "suites/test_zero_infinity.py::test_zero_infinity[@default-opt-tiny-bs2-s64-nvme-pr-pw]",
     "suite": "zero_infinity", "outcome": "failed", "verdict": "error",
     "params": {**PARAMS, "pipeline_read": True, "pipeline_write": True}, "metrics": {},
     "extra": {"run_outcome": "timeout"}},
    {"nodeid": "suites/test_zero_infinity.py::test_nvme_vs_cpu[@default-opt-tiny-bs2-s64]",
     "suite": "zero_infinity", "outcome": "passed", "verdict": "new", "params": {**PARAMS, "offload": "cpu|nvme"},
     "metrics": {**step_metrics("nvme_", 1.0, 2.6e8, 2.6e8), **step_metrics("cpu_", 0.5, 0.0, 0.0),
                 "nvme_vs_cpu_step": metric([2.0], "ratio")},
     "extra": {"nvme_run_outcome": "ok", "cpu_run_outcome": "ok", "nvme_params": {**PARAMS},
               "cpu_params": {**PARAMS, "offload": "cpu"}, "nvme_loss_curve": [10.9, 9.2], "cpu_loss_curve": [10.9, 9.1]}},
    {"nodeid": "suites/test_write.py::test_seq_write[@default]", "suite": "write", "outcome": "passed",
     "verdict": "new", "params": {"bs": "1M", "iodepth": 16, "size": "256M"},
     "metrics": {"write_bw": metric([7.5e8], "B/s", "higher")}, "extra": {}},
    {"nodeid": "suites/test_write.py::test_checkpoint[@default]", "suite": "write", "outcome": "passed",
     "verdict": "new", "params": {"files": 4, "file_bytes": 64 << 20},
     "metrics": {"write_bw": metric([6.9e8], "B/s", "higher"), "readback_bw": metric([6.5e8], "B/s", "higher"),
                 "fsync_latency": metric([0.015, 0.016, 0.017], "s")},
     "extra": {"readback_method": "O_DIRECT", "checkpoint_bytes": 4 * (64 << 20)}},
]}


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_training_and_write_sections(tmp_path: Path) -> None:
    out = tmp_path / "index.html"
    render_run(DATA, out)
    html = out.read_text(encoding="utf-8")
    text = text_of(html)
    assert "DeepSpeed ZeRO-Infinity training step" in text and "Write side" in text
    assert "chart could not be drawn" not in html
    # per case: step time, swap bandwidth, bound, loss
    assert "opt-tiny · bs 2 × 64 · nvme ok 900 ms" in text
    assert "260 MB/s" in text or "289 MB/s" in text  # 2.6e8 B / 0.9 s
    assert "450 ms" in text and "10.9 → 9.16" in text
    # a run that produced no number is listed with its outcome
    assert "pipeline read+write (" not in text and "pipeline read+write TIMEOUT" in text
    # the pair, unfolded, and its sentence
    assert "opt-tiny · bs 2 × 64 · cpu (pair) ok 500 ms" in text
    assert "500 ms in host memory (NVMe / CPU ×2.00)" in text
    # write side
    assert "fio seq write" in text and "750 MB/s" in text
    assert "4 files × 64M, read back O_DIRECT" in text and "650 MB/s" in text and "16 ms" in text
