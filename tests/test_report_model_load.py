"""The cold model load section of the run page, from a small results.json."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_nvme_ai.report import render_run


def metric(samples: list[float], unit: str, better: str = "higher") -> dict[str, Any]:
    return {"value": sorted(samples)[len(samples) // 2], "unit": unit, "better": better, "samples": samples}


def load_test(loader: str, bw: float, fio: float, ttft: float | None = None) -> dict[str, Any]:
    metrics = {"load_bw": metric([bw, bw * 1.1], "B/s"), "load_vs_fio": metric([bw / fio], "ratio"),
               "target_read_bytes": metric([6.6e8], "B", "lower")}
    if ttft is not None:
        metrics["ttft_cold"] = metric([ttft], "s", "lower")
    return {"nodeid": f"suites/test_model_load.py::test_model_load[@default-opt-350m-{loader}]",
            "suite": "model_load", "outcome": "passed", "verdict": "new",
            "params": {"model": "opt-350m", "loader": loader}, "metrics": metrics,
            "extra": {"fio_bw": fio, "model_file_bytes": 662_405_632, "loader_version": "1.0", "loader": loader}}


DATA: dict[str, Any] = {"schema_version": 1, "tests": [
    load_test("deepspeed_aio", 1.3e9, 1.4e9), load_test("safetensors", 1.1e9, 1.2e9),
    load_test("from_pretrained", 0.9e9, 1.2e9, ttft=2.5),
    {"nodeid": "suites/test_model_load.py::test_model_load[@default-opt-350m-fastsafetensors]",
     "suite": "model_load", "outcome": "skipped", "params": {"model": "opt-350m", "loader": "fastsafetensors"},
     "metrics": {}, "extra": {}},
]}


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_model_load_section_lists_each_loader_against_fio_and_ttft(tmp_path: Path) -> None:
    out = tmp_path / "index.html"
    render_run(DATA, out)
    html = out.read_text(encoding="utf-8")
    text = text_of(html)

    assert "Cold model load" in text and "chart could not be drawn" not in html
    assert "<svg" in html
    rows = text[text.index("Cold load per loader"):]
    # loaders in their fixed order, each with its bandwidth, fio's and the ratio; TTFT only for from_pretrained
    assert rows.index("safetensors") < rows.index("from_pretrained") < rows.index("fastsafetensors") \
        < rows.index("deepspeed_aio")
    assert "1.43 GB/s" in rows and "1.4 GB/s" in rows and "0.929" in rows and "2.5 s" in rows and "662 MB" in rows
