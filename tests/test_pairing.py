"""pairing.py: the I/O ceiling of decode throughput, worked by hand."""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.measure.fio.runner import BEST_FIO_BW
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.zero_inference.pairing import decode_ceiling, effective_read_bw, io_efficiency, pair, record_io_efficiency

GB = 1e9


def zi_result(**over: Any) -> dict[str, Any]:
    """A ZeRO-Inference result shaped like the runner's results.json entry (the seed's OPT-66B point)."""
    r: dict[str, Any] = {
        "params": {"batch_size": 64},
        "extra": {"decode_read_bytes_per_step": 30 * GB, "decode_steps": 31},
        "metrics": {"decode_throughput": {"value": 8.08, "samples": [8.08]},
                    "decode_latency": {"value": 31 * 64 / 8.08, "samples": [31 * 64 / 8.08]},
                    "target_read_bytes": {"value": 31 * 30 * GB, "samples": [31 * 30 * GB]},
                    "total_latency": {"value": 300.0, "samples": [300.0]}},
    }
    for k, v in over.items():
        section, name = k.split("__")
        if v is None:
            r[section].pop(name, None)
        else:
            r[section][name] = v
    return r


def test_worked_example_ceiling_and_efficiency() -> None:
    # 64 tokens per step, 5.6 GB/s, 30 GB per step: 64 × 5.6 / 30 = 11.95 tokens/s
    ceiling = decode_ceiling(64, 5.6 * GB, 30 * GB)
    assert ceiling == pytest.approx(11.9467, abs=1e-4)
    assert round(ceiling, 2) == 11.95
    assert io_efficiency(8.08, ceiling) == pytest.approx(0.6763, abs=1e-4)


def test_ceiling_scales_with_batch_and_bandwidth() -> None:
    base = decode_ceiling(32, 3 * GB, 10 * GB)
    assert decode_ceiling(64, 3 * GB, 10 * GB) == pytest.approx(2 * base)
    assert decode_ceiling(32, 6 * GB, 10 * GB) == pytest.approx(2 * base)
    assert decode_ceiling(32, 3 * GB, 20 * GB) == pytest.approx(base / 2)


def test_zero_bytes_per_step_has_no_ceiling_with_a_reason() -> None:
    with pytest.raises(ValueError, match="nothing is read from the target"):
        decode_ceiling(64, 5.6 * GB, 0)
    p = pair(zi_result(extra__decode_read_bytes_per_step=0), 5.6 * GB)
    assert p.ceiling is None and p.efficiency == () and p.efficiency_value is None
    assert "nothing is read from the target" in (p.reason or "")


@pytest.mark.parametrize("args", [(0, 1e9, 1e9), (-1, 1e9, 1e9), (8, 0, 1e9), (8, -1e9, 1e9), (8, 1e9, -5)])
def test_ceiling_rejects_non_positive_inputs(args: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError):
        decode_ceiling(*args)


def test_efficiency_and_read_bw_input_checks() -> None:
    with pytest.raises(ValueError):
        io_efficiency(1.0, 0.0)
    with pytest.raises(ValueError):
        io_efficiency(-1.0, 5.0)
    with pytest.raises(ValueError):
        effective_read_bw(1e9, 0)
    assert effective_read_bw(6e9, 2.0) == 3e9


def test_pair_prefers_decode_bytes_over_decode_latency() -> None:
    p = pair(zi_result(), 5.6 * GB)
    assert p.ceiling == pytest.approx(11.9467, abs=1e-4)
    assert p.efficiency == (pytest.approx(0.6763, abs=1e-4),)
    # 31 steps × 30 GB in 31·64/8.08 s -> 30e9·8.08/64 = 3.7875 GB/s, 0.676 of fio: an I/O-bound run
    # reads at the same fraction of fio as it reaches of the ceiling.
    assert p.read_bw_basis == "decode bytes / decode latency"
    assert p.read_bw[0] == pytest.approx(3.7875 * GB)
    assert p.read_bw_vs_fio[0] == pytest.approx(p.efficiency[0])
    assert p.reason is None


def test_pair_falls_back_to_target_read_bytes_over_total_latency() -> None:
    p = pair(zi_result(extra__decode_steps=None), 5.6 * GB)
    assert p.read_bw_basis == "target_read_bytes / total_latency"
    assert p.read_bw[0] == pytest.approx(31 * 30 * GB / 300.0)
    assert p.read_bw_vs_fio[0] == pytest.approx(3.1 / 5.6)


def test_pair_keeps_one_sample_per_loop() -> None:
    r = zi_result(metrics__decode_throughput=Metric.of("decode_throughput", [8.0, 8.08, 8.2]))
    p = pair(r, 5.6 * GB)
    assert len(p.efficiency) == 3
    assert p.efficiency_value == pytest.approx(8.08 / p.ceiling)  # type: ignore[operator]


def test_pair_without_throughput_or_bytes_says_what_is_missing() -> None:
    p = pair(zi_result(metrics__decode_throughput=None, extra__decode_read_bytes_per_step=None,
                       metrics__target_read_bytes=None), 5.6 * GB)
    assert p.ceiling is None and not p.efficiency and not p.read_bw
    assert "decode_read_bytes_per_step" in (p.reason or "") and "effective read bandwidth" in (p.reason or "")


def test_pair_needs_a_batch_size_and_fio_bw() -> None:
    r = zi_result()
    r["params"] = {}
    with pytest.raises(ValueError, match="batch_size"):
        pair(r, 5.6 * GB)
    with pytest.raises(ValueError, match="fio bandwidth"):
        pair(zi_result(), 0)


def test_pairing_is_frozen() -> None:
    p = pair(zi_result(), 5.6 * GB)
    with pytest.raises(FrozenInstanceError):
        p.ceiling = 1.0  # type: ignore[misc]


class _Obj:
    """A runner result as an object (attributes instead of dict keys)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.params, self.extra, self.metrics = d["params"], d["extra"], d["metrics"]


class _FakeRecorder:
    def __init__(self, cache: SessionCache) -> None:
        self.session_cache = cache
        self.target = type("T", (), {"label": "default"})()
        self.recorded: dict[str, Metric] = {}
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []

    def record_samples(self, name: str, samples: Any, **kw: Any) -> Metric:
        m = Metric.of(name, samples, **kw)
        self.recorded[name] = m
        return m

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass(frozen=True)
class _Spec:
    batch_size: int


@dataclass(frozen=True)
class _InferenceResult:
    """The attributes pairing reads from zero_inference.runner.InferenceResult."""

    spec: _Spec
    metrics: dict[str, Metric]
    decode_read_bytes_per_step: float | None
    decode_steps: int | None


def test_pair_reads_the_runners_result_object() -> None:
    r = _InferenceResult(_Spec(64), {"decode_throughput": Metric.of("decode_throughput", [8.08, 8.0]),
                                     "decode_latency": Metric.of("decode_latency", [245.5, 248.0])},
                         decode_read_bytes_per_step=30 * GB, decode_steps=31)
    p = pair(r, 5.6 * GB)
    assert p.batch_size == 64 and p.ceiling == pytest.approx(11.9467, abs=1e-4)
    assert p.efficiency[0] == pytest.approx(0.6763, abs=1e-4) and len(p.efficiency) == 2
    assert p.read_bw[0] == pytest.approx(31 * 30 * GB / 245.5)


def test_record_io_efficiency_uses_the_sessions_fio_bw() -> None:
    cache = SessionCache()
    cache.put(BEST_FIO_BW, 5.6 * GB, "default")
    rec = _FakeRecorder(cache)
    p = record_io_efficiency(rec, _Obj(zi_result()))  # type: ignore[arg-type]
    assert p is not None
    assert set(rec.recorded) == {"decode_ceiling", "io_efficiency", "read_bw_vs_fio"}
    assert rec.recorded["io_efficiency"].value == pytest.approx(0.6763, abs=1e-4)
    assert rec.recorded["decode_ceiling"].unit == "tokens/s"
    assert rec.extra["io_pairing"]["fio_bw"] == 5.6 * GB


def test_record_io_efficiency_without_fio_notes_why() -> None:
    rec = _FakeRecorder(SessionCache())
    assert record_io_efficiency(rec, zi_result()) is None  # type: ignore[arg-type]
    assert not rec.recorded and "no fio bandwidth" in rec.notes[0]
