"""Per-loop measurements of a ZeRO-Inference run and the catalog metrics derived from them.

Formulas are run_model.py's (REFERENCE.md): prefill latency is the first forward
pass of `generate`, decode latency = total − prefill, prefill throughput =
bs·prompt/prefill, decode throughput = bs·(gen−1)/decode, total throughput =
bs·gen/total. Unlike run_model.py (which reports only its last loop) every
measured loop is one sample, so the gate sees the spread.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.energy import energy_metrics

# Guards a division when a loop's decode time rounds to zero (gen_len 1): run_model.py uses the same floor.
_MIN_SECONDS = 1e-10


@dataclass(frozen=True)
class LoopMeasurement:
    """One `generate` call, measured in the child."""

    total_latency: float          # s, the whole generate call
    prefill_latency: float        # s, first forward (prompt) pass
    forward_calls: int            # forwards of the model during the call: 1 prefill + decode steps
    read_bytes: int               # /proc/self/io read_bytes delta over the call (O_DIRECT reads count)
    prefill_read_bytes: int       # ... from the call's start to the end of the first forward
    peak_rss: int                 # B, process high-water mark after the call
    peak_gpu_mem: int | None      # B, torch.cuda.max_memory_allocated during the call; None off CUDA
    new_tokens: int               # tokens generated per sequence (checks min_new_tokens held)
    gpu_energy: float | None = None  # J over the call, NVML (measure/energy.py); None where not readable
    cpu_energy: float | None = None  # J over the call, RAPL package zones; None where not readable
    # Block-layer bytes on the target's disk over the call, from the child's own accounting cgroup
    # (measure/deepspeed/devcount.py); None where no cgroup isolates the child (the record says why).
    device_read_bytes: int | None = None
    device_write_bytes: int | None = None

    @property
    def decode_latency(self) -> float:
        return max(self.total_latency - self.prefill_latency, 0.0)

    @property
    def decode_steps(self) -> int:
        return max(self.forward_calls - 1, 0)

    @property
    def decode_read_bytes(self) -> int:
        return max(self.read_bytes - self.prefill_read_bytes, 0)

    @property
    def decode_read_bytes_per_step(self) -> float | None:
        """What one decode step streams from the target: for NVMe offload, about the model's swapped weights."""
        return self.decode_read_bytes / self.decode_steps if self.decode_steps else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LoopMeasurement":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def loop_metrics(loops: Iterable[LoopMeasurement], *, batch_size: int, prompt_len: int,
                 gen_len: int) -> dict[str, Metric]:
    """Catalog metrics with one sample per measured loop; empty when there are no loops."""
    loops = list(loops)
    if not loops:
        return {}
    bs = batch_size
    samples: dict[str, list[float]] = {
        "prefill_latency": [lp.prefill_latency for lp in loops],
        "decode_latency": [lp.decode_latency for lp in loops],
        "total_latency": [lp.total_latency for lp in loops],
        "prefill_throughput": [bs * prompt_len / max(lp.prefill_latency, _MIN_SECONDS) for lp in loops],
        "decode_throughput": [bs * (gen_len - 1) / max(lp.decode_latency, _MIN_SECONDS) for lp in loops],
        "total_throughput": [bs * gen_len / max(lp.total_latency, _MIN_SECONDS) for lp in loops],
        "peak_rss": [float(lp.peak_rss) for lp in loops],
        "target_read_bytes": [float(lp.read_bytes) for lp in loops],
        "target_read_bw": [lp.read_bytes / max(lp.total_latency, _MIN_SECONDS) for lp in loops],
    }
    if gen_len < 2:
        # one generated token is all prefill: there is no decode phase to measure
        del samples["decode_latency"], samples["decode_throughput"]
    if all(lp.peak_gpu_mem is not None for lp in loops):
        samples["peak_gpu_mem"] = [float(lp.peak_gpu_mem or 0) for lp in loops]
    samples.update(device_samples(loops))
    metrics = {name: Metric.of(name, values) for name, values in samples.items()}
    metrics.update(energy_metrics((lp.gpu_energy, lp.cpu_energy, lp.total_latency, bs * lp.new_tokens)
                                  for lp in loops))
    return metrics


def device_samples(loops: list[LoopMeasurement]) -> dict[str, list[float]]:
    """Device bytes per loop and their ratio to the process's own block-layer reads (/proc/self/io), when
    every loop has them. The ratio checks attribution (the cgroup holds the reader, nothing else moved
    the disk for it); it cannot see the page cache, which both counters miss (see `swap_read_request`)."""
    if not loops or any(lp.device_read_bytes is None or lp.device_write_bytes is None for lp in loops):
        return {}
    out = {"device_read_bytes": [float(lp.device_read_bytes or 0) for lp in loops],
           "device_write_bytes": [float(lp.device_write_bytes or 0) for lp in loops]}
    if all(lp.read_bytes > 0 for lp in loops):
        out["device_read_ratio"] = [(lp.device_read_bytes or 0) / lp.read_bytes for lp in loops]
    return out
