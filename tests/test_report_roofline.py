"""The report's roofline view: per NVMe case a throughput-vs-bandwidth chart and a sentence; the
drive-speed section with its caps, predictions and refusals."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.report import render_run

GOLDEN = Path(__file__).parent / "golden" / "results_full.json"


def drive_speed_test(golden: dict[str, Any]) -> dict[str, Any]:
    """A test_drive_speed record shaped like the suite's, two caps accepted and one refused."""
    zi = next(t for t in golden["tests"] if "roofline" in (t.get("extra") or {}))
    t = copy.deepcopy(zi)
    t["nodeid"] = "suites/test_drive_speed.py::test_drive_speed[opt-125m-bs1-@nvme0]"
    t["key"] = "suites/test_drive_speed.py::test_drive_speed[opt-125m-bs1]"
    t["suite"] = "drive_speed"
    t["params"] = {"model": "opt-125m", "batch_size": 1, "quant_bits": 16, "offload": "nvme",
                   "offloaded_fraction": 0.999}
    t["metrics"] = {"cap100_decode_throughput": {"value": 4.0, "unit": "tokens/s", "better": "higher",
                                                 "samples": [3.9, 4.0, 4.1], "gated": False},
                    "bandwidth_sensitivity": {"value": 0.8182, "unit": "ratio", "better": "higher",
                                              "samples": [0.8182], "gated": False}}
    t.pop("baseline", None)
    points = [
        {"fraction": 1.0, "cap_bw": 1.25e9, "fio_bw": 1.25e9, "refused": None, "decode_throughput": [3.9, 4.0, 4.1],
         "bytes_per_step": 250e6, "t_step": 0.25, "predicted": 4.0, "error": 0.0, "measured": 4.0},
        {"fraction": 0.5, "cap_bw": 0.625e9, "fio_bw": 0.63e9, "refused": None, "decode_throughput": [2.2],
         "bytes_per_step": 250e6, "t_step": 0.45, "predicted": 2.23, "error": 0.0136, "measured": 2.2},
        {"fraction": 0.25, "cap_bw": 0.3125e9, "fio_bw": 0.2e9, "decode_throughput": [], "bytes_per_step": None,
         "t_step": None, "predicted": None, "error": None, "measured": None,
         "refused": "fio in the capped cgroup read 200.0 MB/s against a cap of 312.5 MB/s (-36%, outside ±10%): "
                    "point refused"}]
    t["extra"] = {"drive_speed": {"points": points, "t_compute": 0.15, "tokens_per_step": 1, "overlap": 2 / 3,
                                  "bytes_per_step": 250e6, "drive_bw": 1.25e9, "reason": None,
                                  "curve": [[f * 1.25e9, 1 / (0.2 / f + 0.15 - 2 / 3 * min(0.2 / f, 0.15))]
                                            for f in (0.25, 0.5, 1.0, 2.0)],
                                  "bandwidth_sensitivity": 0.8182, "bandwidth_sensitivity_predicted_above": 0.3636}}
    return t


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    golden["tests"].append(drive_speed_test(golden))
    skipped = drive_speed_test(golden)
    skipped["nodeid"] = skipped["nodeid"].replace("bs1", "bs2")
    skipped["params"]["batch_size"] = 2
    skipped["outcome"], skipped["metrics"] = "skipped", {}
    skipped["extra"] = {"drive_speed": {"skipped": "the block throttle needs root"}}
    golden["tests"].append(skipped)
    out = tmp_path_factory.mktemp("run") / "index.html"
    render_run(golden, out)
    return out.read_text(encoding="utf-8")


def section(page: str, sid: str) -> str:
    m = re.search(rf'id="{sid}">(.*?)</section>', page, flags=re.S)
    assert m, sid
    return m.group(1)


def test_zi_section_has_the_roofline_chart_and_a_sentence_per_case(page: str) -> None:
    sec = section(page, "zero_inference")
    assert "Decode throughput vs read bandwidth per NVMe-offloaded case" in sec
    for label in ("I/O bound", "compute bound", "drive&#x27;s fio bandwidth", "measured"):
        assert label in sec or label.replace("&#x27;", "'") in sec, label
    sentences = re.findall(r"Decode is (?:I/O|compute) bound", sec)
    assert len(sentences) == 6  # one per NVMe case of the golden
    assert "Twice the read bandwidth would give about" in sec and "is hidden" in sec


def test_drive_speed_section(page: str) -> None:
    sec = section(page, "drive_speed")
    assert "Drive-speed emulation" in sec and "<svg" in sec
    assert "+82% decode throughput" in sec and "predict +36%" in sec
    assert "point refused" in sec and "200.0 MB/s" in sec and "312.5 MB/s" in sec
    assert "+1.4%" in sec          # the ½ cap's prediction error
    assert "skipped — the block throttle needs root" in sec


def test_roofline_chart_names_the_aio_bandwidth_where_fio_was_absent(tmp_path: Path) -> None:
    from pytest_nvme_ai.measure.zero_inference.pairing import sentence

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    zi = [t for t in golden["tests"] if "roofline" in (t.get("extra") or {})]
    roof = zi[0]["extra"]["roofline"]
    roof["bw_source"] = "deepspeed-aio"
    roof["sentence"] = sentence(roof)
    assert roof["sentence"] and roof["sentence"].endswith("(t_io from DeepSpeed's aio read bandwidth on this target: "
                                                          "fio is not installed here)")
    out = tmp_path / "index.html"
    render_run(golden, out)
    sec = section(out.read_text(encoding="utf-8"), "zero_inference")
    assert sec.count("DeepSpeed aio bandwidth (no fio)") >= 1
    assert "fio is not installed here" in sec
    # the other cases still name fio
    assert "drive&#x27;s fio bandwidth" in sec or "drive's fio bandwidth" in sec
