"""ZeRO-Infinity spec, DeepSpeed config, per-step metrics and the step's I/O bound: plain data, no DeepSpeed."""
from __future__ import annotations

import math

import pytest
from packaging.version import Version

from pytest_nvme_ai.core.metrics import CATALOG
from pytest_nvme_ai.measure.zero_infinity.bounds import StepBound, step_io_bound
from pytest_nvme_ai.measure.zero_infinity.ds_config import (build_ds_config, model_info, optimizer_buffer_count,
                                                            swap_bytes_estimate)
from pytest_nvme_ai.measure.zero_infinity.metrics import StepMeasurement, step_metrics
from pytest_nvme_ai.measure.zero_infinity.spec import SpecError, TrainingSpec


def test_id_and_params_name_what_moves_the_figures() -> None:
    spec = TrainingSpec(model="opt-125m", num_layers=4, pipeline_read=True)
    assert spec.id == "opt-125m-l4-bs2-s64-nvme-pr"
    p = spec.params("cpu")
    assert p["dtype"] == "bf16" and p["offload"] == "nvme" and p["pipeline_read"] is True
    assert TrainingSpec(offload_param="nvme", offload_optimizer="cpu").offload_label == "param-nvme+optim-cpu"
    assert TrainingSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"steps": 1, "warmup": 0}, "at least 2"),
    ({"offload_param": "disk"}, "offload_param 'disk' is not one of"),
    ({"offload_optimizer": "none"}, "offload_param without offload_optimizer"),
    ({"offload_optimizer": "cpu", "pipeline_read": True}, "need offload_optimizer 'nvme'"),
    ({"dtype": "fp16"}, "fp16 is not supported"),
    ({"model": "opt-nope"}, "unknown model 'opt-nope'"),
    ({"seq_len": 4096}, "max_position_embeddings"),
    ({"lr": -1.0}, "lr must be a positive number"),
])
def test_validation_names_the_field(changes: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TrainingSpec(**changes).validate("cpu")


def test_unknown_json_key_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown spec key"):
        TrainingSpec.from_dict({"model": "opt-tiny", "epochs": 3})


def test_layer_override_shrinks_the_model() -> None:
    full, sliced = model_info(TrainingSpec(model="opt-125m")), model_info(TrainingSpec(model="opt-125m", num_layers=4))
    assert full.num_layers == 12 and sliced.num_layers == 4 and sliced.param_count < full.param_count


def test_ds_config_offloads_params_and_optimizer_to_the_target() -> None:
    spec = TrainingSpec(model="opt-tiny", pipeline_read=True, pipeline_write=True)
    cfg = build_ds_config(spec, model_info(spec), accelerator="cpu", nvme_path="/t/swap", version=Version("0.19.8"))
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3 and zero["sub_group_size"] == spec.sub_group_size
    assert zero["offload_param"]["device"] == "nvme" and zero["offload_param"]["nvme_path"] == "/t/swap"
    assert zero["offload_param"]["buffer_size"] >= model_info(spec).largest_param_numel  # elements, not bytes
    opt = zero["offload_optimizer"]
    assert opt["device"] == "nvme" and opt["pipeline_read"] and opt["pipeline_write"]
    assert opt["buffer_count"] == 12 == optimizer_buffer_count(spec)  # 4 per overlapped stage
    assert not opt["pin_memory"]  # nothing to pin for on the CPU accelerator
    assert cfg["bf16"]["enabled"] and not cfg["fp16"]["enabled"]
    assert cfg["optimizer"]["type"] == "AdamW"  # so DeepSpeed builds its CPU Adam op
    assert "intra_op_parallelism" in cfg["aio"] and "thread_count" not in cfg["aio"]


def test_cpu_offload_has_no_aio_block_and_no_path() -> None:
    spec = TrainingSpec(model="opt-tiny", offload_param="cpu", offload_optimizer="cpu")
    cfg = build_ds_config(spec, model_info(spec), accelerator="cpu")
    assert cfg["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert "aio" not in cfg
    with pytest.raises(ValueError, match="needs an nvme_path"):
        build_ds_config(TrainingSpec(model="opt-tiny"), model_info(TrainingSpec(model="opt-tiny")), accelerator="cpu")


def test_swap_estimate_counts_16bit_params_and_fp32_adam_states() -> None:
    spec = TrainingSpec(model="opt-tiny")
    n = model_info(spec).param_count
    assert swap_bytes_estimate(model_info(spec), spec) == 2 * n + 12 * n
    assert swap_bytes_estimate(model_info(spec), spec.with_(offload_param="cpu", offload_optimizer="cpu")) == 0


def test_step_metrics_one_sample_per_step() -> None:
    steps = [StepMeasurement(2.0, 10.0, 1000, 3000, 5), StepMeasurement(1.0, 9.0, 1000, 1000, 6)]
    m = step_metrics(steps, tokens_per_step=128)
    assert m["step_time"].samples == (2.0, 1.0)
    assert m["train_throughput"].samples == (64.0, 128.0)
    assert m["target_write_bw"].samples == (1500.0, 1000.0)
    assert m["loss"].samples == (10.0, 9.0) and not m["loss"].gated
    assert step_metrics([], tokens_per_step=1) == {}
    for name in m:
        assert name in CATALOG


def test_write_side_and_training_names_are_in_the_catalog() -> None:
    for name in ("write_bw", "fsync_latency", "readback_bw", "nvme_vs_cpu_step", "step_io_bound", "step_io_fraction"):
        assert name in CATALOG
    assert CATALOG["bw"].description == "read bandwidth"  # bw stays read bandwidth
    assert CATALOG["nvme_vs_cpu_step"].better == "lower"


def test_io_bound_adds_reads_and_writes() -> None:
    # the module docstring's worked example
    assert math.isclose(step_io_bound(1.08e9, 1.08e9, 1.2e9, 1.0e9), 0.9 + 1.08)
    b = StepBound(read_bytes=1e9, write_bytes=1e9, read_bw=2e9, write_bw=1e9, step_time=3.0)
    assert math.isclose(b.io_time, 1.5) and math.isclose(b.fraction, 0.5)
    assert step_io_bound(0, 0, 0, 0) == 0.0  # nothing swapped: no bound, no division
    with pytest.raises(ValueError, match="write bandwidth"):
        step_io_bound(1, 1, 1, 0)
    with pytest.raises(ValueError, match="negative"):
        step_io_bound(-1, 0, 1, 1)
