"""pairing.py: an offloaded run's loops against t_io (fio) and t_compute (a resident-weights run)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.metrics import CATALOG
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement
from pytest_nvme_ai.measure.zero_inference.pairing import METRICS, record_bounds, run_bounds, sentence
from pytest_nvme_ai.measure.zero_inference.runner import InferenceResult, offloaded_fraction, streaming_layers
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec
from pytest_nvme_ai.core.recorder import MemoryRecorder

MB = 1e6


def loop(total: float, prefill: float, read: int, prefill_read: int, steps: int = 7) -> LoopMeasurement:
    return LoopMeasurement(total_latency=total, prefill_latency=prefill, forward_calls=steps + 1, read_bytes=read,
                           prefill_read_bytes=prefill_read, peak_rss=1, peak_gpu_mem=None, new_tokens=steps + 1)


def result(spec: InferenceSpec, loops: list[LoopMeasurement], **kw: Any) -> InferenceResult:
    return InferenceResult(spec=spec, outcome="ok", error=None, accelerator="cpu", dtype="bf16", loops=tuple(loops),
                           warmup=(), metrics={}, ds_config={}, versions={}, **kw)


SPEC = InferenceSpec(model="opt-125m", batch_size=2, prompt_len=32, gen_len=8, offload="nvme")


def offloaded() -> InferenceResult:
    # per decode step 250 MB read and 0.25 s; prefill 0.3 s reading 250 MB
    return result(SPEC, [loop(0.3 + 7 * 0.25, 0.3, 8 * 250_000_000, 250_000_000)] * 2)


def reference() -> InferenceResult:
    return result(SPEC.with_(offload="none"), [loop(0.2 + 7 * 0.15, 0.2, 0, 0), loop(0.2 + 7 * 0.15, 0.2, 0, 0)])


def test_run_bounds_worked_numbers() -> None:
    b = run_bounds(offloaded(), reference(), fio_bw=1.25e9)
    assert len(b.decode) == 2 and len(b.prefill) == 2 and b.reason is None
    d = b.decode[0]
    assert (d.t_io, d.t_compute, d.t_step) == pytest.approx((0.2, 0.15, 0.25))
    assert d.roofline_throughput == pytest.approx(10.0) and d.overlap == pytest.approx(2 / 3)
    p = b.prefill[0]
    assert p.tokens_per_step == 64 and (p.t_io, p.t_compute, p.t_step) == pytest.approx((0.2, 0.2, 0.3))
    assert p.overlap == pytest.approx(0.5)
    summary = b.summary()
    assert summary["decode"]["bound"] == "io" and summary["reference"] == reference().spec.id
    assert summary["ridge_bw"] == pytest.approx(250 * MB / 0.15)
    text = sentence(summary) or ""
    assert "I/O bound" in text and "67%" in text
    # ×2 bandwidth: t_io 0.1, step 0.1 + 0.15 - 2/3 * 0.1 = 0.1833 s against 0.25 s: +36%
    assert "+36%" in text


def test_record_bounds_records_metrics_not_derived_figures(tmp_path: Path) -> None:
    rec = MemoryRecorder(tmp_path)
    record_bounds(rec, run_bounds(offloaded(), reference(), fio_bw=1.25e9))
    expected = set(METRICS) | {f"prefill_{m}" for m in METRICS}
    assert set(rec.recorded) == expected
    assert all(name in CATALOG and not CATALOG[name].gated for name in expected)
    assert "roofline_efficiency" not in rec.recorded and "bound" not in rec.recorded
    assert rec.extra["roofline"]["decode"]["roofline_efficiency"] == pytest.approx(0.8)
    assert rec.recorded["read_bw_vs_fio"].samples == pytest.approx((0.8, 0.8))


def test_no_decode_without_decode_steps() -> None:
    one = SPEC.with_(gen_len=1)
    b = run_bounds(result(one, [loop(0.3, 0.3, 250_000_000, 250_000_000, steps=0)]), reference(), 1e9)
    assert not b.decode and b.prefill and "no decode" in (b.reason or "")
    with pytest.raises(ValueError):
        run_bounds(offloaded(), reference(), 0.0)


def test_dropped_metrics_are_gone_from_the_catalog() -> None:
    assert "io_efficiency" not in CATALOG and "decode_ceiling" not in CATALOG


def test_offloaded_fraction_and_streaming_layers() -> None:
    residency = [{"name": "model.decoder.embed_tokens.weight", "numel": 100, "swapped": True},
                 {"name": "model.decoder.layers.0.fc1.weight", "numel": 50, "swapped": True},
                 {"name": "model.decoder.layers.0.fc1.bias", "numel": 10, "swapped": False},
                 {"name": "model.decoder.layers.1.self_attn.q_proj.weight", "numel": 40, "swapped": False}]
    assert offloaded_fraction(residency) == pytest.approx(150 / 200)
    assert streaming_layers(residency) == {0: 1, 1: 0}
    assert offloaded_fraction([]) is None
    r = result(SPEC, [], residency=tuple(residency), swap_files=({"path": "a", "bytes": 300},))
    assert r.offloaded_bytes == 300 and r.offloaded_fraction == pytest.approx(0.75)


def test_runner_records_offloaded_fraction_as_a_param_so_baselines_compare_like_with_like(tmp_path: Path) -> None:
    """Another aio block offloads another share of the model (DeepSpeed's min_aio_bytes): the fraction is a
    param, and the gate's changed-params rule makes such a baseline incomparable, saying which one."""
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.gate.policy import _changed_params

    rec = MemoryRecorder(tmp_path)
    residency = ({"name": "model.decoder.layers.0.fc1.weight", "numel": 3, "swapped": True},
                 {"name": "model.decoder.layers.0.self_attn.q_proj.weight", "numel": 1, "swapped": False})
    r = result(SPEC, [loop(1.0, 0.2, 100, 10)], residency=residency, swap_files=({"path": "x", "bytes": 6},))
    runner = ZeroInferenceRunner.__new__(ZeroInferenceRunner)
    runner.recorder = rec
    runner.record(r)
    assert rec.params["offloaded_fraction"] == 0.75
    assert rec.recorded["offloaded_bytes"].value == 6 and not rec.recorded["offloaded_bytes"].gated
    assert rec.extra["streaming_layers"] == {"0": 1}
    why = _changed_params({"offloaded_fraction": 0.999, "model": "opt-125m"}, dict(rec.params, model="opt-125m"))
    assert "offloaded_fraction 0.999 -> 0.75" in why
