"""InferenceSpec validation and JSON, per-loop metric formulas, outcome classification."""
from __future__ import annotations

import signal

import pytest

from pytest_nvme_ai.measure.deepspeed.recording import prefixed
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement, loop_metrics
from pytest_nvme_ai.measure.deepspeed.models import UnknownModel
from pytest_nvme_ai.measure.deepspeed.launch import classify
from pytest_nvme_ai.measure.deepspeed.record import ChildRecord
from pytest_nvme_ai.measure.zero_inference.spec import (
    KV_OFFLOAD_CPU_REASON,
    InferenceSpec,
    SpecError,
    SpecNotApplicable,
)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_batch_size(bad: object) -> None:
    with pytest.raises(SpecError, match="batch_size must be a positive integer"):
        InferenceSpec(batch_size=bad).validate("cpu")  # type: ignore[arg-type]


def test_unknown_model_is_a_spec_error_listing_shipped_models() -> None:
    with pytest.raises(UnknownModel, match="opt-tiny.*opt-66b"):
        InferenceSpec(model="llama-9000").validate("cpu")
    assert issubclass(UnknownModel, SpecError)


def test_kv_offload_on_cpu_is_not_applicable_with_the_reason() -> None:
    spec = InferenceSpec(model="opt-tiny", prompt_len=16, gen_len=4, kv_offload=True)
    with pytest.raises(SpecNotApplicable) as exc:
        spec.validate("cpu")
    assert str(exc.value) == KV_OFFLOAD_CPU_REASON
    assert "needs CUDA" in str(exc.value)
    spec.validate("cuda")  # fine where CUDA is


def test_fp16_on_cpu_is_refused_pointing_at_bf16() -> None:
    spec = InferenceSpec(dtype="fp16", prompt_len=16, gen_len=4)
    with pytest.raises(SpecError, match="bf16") as exc:
        spec.validate("cpu")
    assert not isinstance(exc.value, SpecNotApplicable)  # a mistake, not a skip
    spec.validate("cuda")


def test_auto_dtype_by_accelerator() -> None:
    spec = InferenceSpec()
    assert spec.resolved_dtype("cpu") == "bf16" and spec.resolved_dtype("cuda") == "fp16"
    assert InferenceSpec(dtype="bf16").resolved_dtype("cuda") == "bf16"


@pytest.mark.parametrize("field, value, needle", [
    ("offload", "disk", "offload 'disk' is not one of"),
    ("quant_bits", 3, "quant_bits 3"),
    ("dtype", "fp32", "dtype 'fp32'"),
    ("gen_len", 0, "gen_len"),
    ("loops", 0, "loops"),
    ("warmup", -1, "warmup"),
    ("buffer_size", 0, "buffer_size"),
    ("test_hook", "explode", "test_hook"),
])
def test_field_errors_name_the_field(field: str, value: object, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        InferenceSpec(**{field: value}).validate("cuda")  # type: ignore[arg-type]


def test_sequence_longer_than_positions_is_refused() -> None:
    with pytest.raises(SpecError, match="max_position_embeddings 2048"):
        InferenceSpec(prompt_len=2040, gen_len=32).validate("cuda")


def test_json_round_trip() -> None:
    spec = InferenceSpec(model="opt-13b", batch_size=80, offload="cpu", quant_bits=4, kv_offload=True,
                         aio={"block_size": 1 << 20, "queue_depth": 8}, buffer_size=1 << 28, loops=5, seed=7)
    back = InferenceSpec.from_json(spec.to_json())
    assert back == spec and back.aio == {"block_size": 1 << 20, "queue_depth": 8}


def test_unknown_json_key_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown spec key.*batchsize.*accepted: .*batch_size"):
        InferenceSpec.from_dict({"batchsize": 4})


def test_id_and_params() -> None:
    spec = InferenceSpec(model="facebook/opt-13b", batch_size=80, quant_bits=4, kv_offload=True)
    assert spec.id == "opt-13b-bs80-p512-g32-nvme-q4-kv"
    p = spec.params("cuda")
    assert p["model"] == "opt-13b" and p["dtype"] == "fp16" and p["quant_bits"] == 4 and p["accelerator"] == "cuda"


# ---- metrics -------------------------------------------------------------------------------------

def loop(total: float, prefill: float, read: int = 1000, prefill_read: int = 100, calls: int = 8) -> LoopMeasurement:
    return LoopMeasurement(total_latency=total, prefill_latency=prefill, forward_calls=calls, read_bytes=read,
                           prefill_read_bytes=prefill_read, peak_rss=1 << 30, peak_gpu_mem=None, new_tokens=calls)


def test_loop_metrics_use_run_model_formulas() -> None:
    loops = [loop(2.0, 0.5), loop(4.0, 1.0)]
    m = loop_metrics(loops, batch_size=4, prompt_len=32, gen_len=8)
    assert m["prefill_latency"].samples == (0.5, 1.0)
    assert m["decode_latency"].samples == (1.5, 3.0)
    assert m["prefill_throughput"].samples == (4 * 32 / 0.5, 4 * 32 / 1.0)
    assert m["decode_throughput"].samples == (4 * 7 / 1.5, 4 * 7 / 3.0)
    assert m["total_throughput"].samples == (4 * 8 / 2.0, 4 * 8 / 4.0)
    assert m["target_read_bytes"].samples == (1000, 1000)
    assert m["target_read_bw"].samples == (500, 250)
    assert "peak_gpu_mem" not in m  # only measured on CUDA
    assert m["total_throughput"].unit == "tokens/s" and m["total_throughput"].better == "higher"


def test_decode_bytes_per_step() -> None:
    lp = loop(2.0, 0.5, read=1000, prefill_read=300, calls=8)
    assert lp.decode_steps == 7 and lp.decode_read_bytes == 700 and lp.decode_read_bytes_per_step == 100


def test_prefixed_metric_keeps_unit_and_direction() -> None:
    m = prefixed(loop_metrics([loop(1.0, 0.1)], batch_size=1, prompt_len=8, gen_len=8)["total_throughput"], "cpu")
    assert m.name == "cpu_total_throughput" and m.unit == "tokens/s" and m.better == "higher"


# ---- outcome classification ----------------------------------------------------------------------

@pytest.mark.parametrize("rc, timed_out, result, tail, outcome", [
    (None, True, None, "", "timeout"),
    (0, False, {"outcome": "ok"}, "", "ok"),
    (3, False, {"outcome": "oom", "error": "MemoryError: x"}, "", "oom"),
    (-signal.SIGKILL, False, None, "", "oom"),
    (1, False, None, "torch.OutOfMemoryError: CUDA out of memory", "oom"),
    (-signal.SIGSEGV, False, None, "", "error"),
    (1, False, None, "Traceback ... ValueError", "error"),
])
def test_classify(rc: int | None, timed_out: bool, result: dict | None, tail: str, outcome: str) -> None:
    got, why = classify(rc, timed_out, ChildRecord.from_dict(result) if result else None, tail)
    assert got == outcome
    if outcome != "ok":
        assert why
