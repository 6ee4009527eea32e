"""Pairing: an NVMe-offloaded ZeRO-Inference run against its two bounds, measured in the same session.

* the I/O bound: bytes the run read from the target per step ÷ fio's read bandwidth on that target;
* the compute bound: the same model, batch and quantization with the weights resident (a reference
  run with offload `none`, or `cpu` where none does not fit).

The maths is `pytest_nvme_ai.measure.bounds` (formulas in docs/roofline.md). Per measured loop of
the offloaded run, decode and prefill each give one `Bounds`; the recorded metrics are
`roofline_throughput`, `read_bw_vs_fio`, `accelerator_utilization` and `overlap` (and the same with a
`prefill_` prefix). `roofline_efficiency` and `bound` are functions of those: they go into the
result's extra data (`roofline`), never into metrics.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from pytest_nvme_ai.core.cache import CacheKey
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.text import median
from pytest_nvme_ai.measure.bounds import Bounds, predict_step, predict_throughput, relative_error, ridge_bandwidth
from pytest_nvme_ai.measure.fio.runner import BEST_FIO_BW

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.measure.aio.runner import AioSettings
    from pytest_nvme_ai.measure.zero_inference.runner import InferenceResult

METRICS = ("roofline_throughput", "read_bw_vs_fio", "accelerator_utilization", "overlap")


@dataclass(frozen=True)
class RunBounds:
    """Per loop of the offloaded run: its decode step and its prefill against the two bounds."""

    fio_bw: float                                   # B/s, the same target this session (see bw_source)
    decode: tuple[Bounds, ...]
    prefill: tuple[Bounds, ...]
    decode_bytes_per_step: float | None             # B, median over loops
    reference: str                                  # spec id of the resident-weights run
    reason: str | None = None                       # why a phase has no bounds
    # Where t_io's bandwidth came from: "fio", or "deepspeed-aio" where fio is absent (a GPU machine
    # without fio): DeepSpeed's own read path at the run's aio settings, on the same target.
    bw_source: str = "fio"
    # The figure named in words wherever it is used (the x2 answer, the report): what measured it, at
    # which settings, when. Empty for callers that did not say.
    bw_label: str = ""

    def summary(self) -> dict[str, Any]:
        """What the report shows (extra 'roofline'): medians, the bound, and the inputs of the chart."""
        out: dict[str, Any] = {"fio_bw": self.fio_bw, "bw_source": self.bw_source, "bw_label": self.bw_label,
                               "reference": self.reference, "reason": self.reason,
                               "decode_bytes_per_step": self.decode_bytes_per_step}
        for phase, bounds in (("decode", self.decode), ("prefill", self.prefill)):
            if bounds:
                out[phase] = phase_summary(bounds)
        if self.decode and self.decode_bytes_per_step:
            out["ridge_bw"] = ridge_bandwidth(self.decode_bytes_per_step, self.decode[0].t_compute)
            d = out["decode"]
            out["x2_gain"] = x2_gain(d["t_io"], d["t_compute"], d["overlap"])
            out["unfitted"] = unfitted(d)
            out["curve"] = model_curve(d["tokens_per_step"], self.decode_bytes_per_step, self.fio_bw,
                                       d["t_compute"], d["overlap"])
            out["sentence"] = sentence(out)
        return out


def phase_summary(bounds: tuple[Bounds, ...]) -> dict[str, Any]:
    def med(attr: str) -> float:
        return float(statistics.median(getattr(b, attr) for b in bounds))

    t_io, t_compute, t_step = med("t_io"), med("t_compute"), med("t_step")
    typical = Bounds(bounds[0].tokens_per_step, t_io, t_compute, t_step)
    return {"tokens_per_step": typical.tokens_per_step, "t_io": t_io, "t_compute": t_compute, "t_step": t_step,
            "achieved_throughput": typical.achieved_throughput,
            "roofline_throughput": typical.roofline_throughput,
            "read_bw_vs_fio": typical.read_bw_vs_fio,
            "accelerator_utilization": typical.accelerator_utilization,
            "overlap": typical.overlap, "roofline_efficiency": typical.roofline_efficiency, "bound": typical.bound}


def unfitted(decode: Mapping[str, Any]) -> dict[str, float]:
    """The prediction with nothing fitted, batch / max(t_io, t_compute), against the measured decode
    throughput: error = (predicted - measured) / measured."""
    predicted, measured = float(decode["roofline_throughput"]), float(decode["achieved_throughput"])
    return {"predicted": predicted, "measured": measured, "error": relative_error(measured, predicted)}


def compute_times(reference: "InferenceResult") -> tuple[float | None, float | None]:
    """(decode step, prefill) seconds of the resident-weights run: medians over its measured loops."""
    steps = [lp.decode_latency / lp.decode_steps for lp in reference.loops if lp.decode_steps]
    return median(steps), median([lp.prefill_latency for lp in reference.loops])


def run_bounds(offloaded: "InferenceResult", reference: "InferenceResult", fio_bw: float,
               bw_source: str = "fio", bw_label: str = "") -> RunBounds:
    """The offloaded run's loops against t_io (its bytes ÷ fio_bw) and t_compute (the reference's times)."""
    if fio_bw <= 0:
        raise ValueError(f"fio bandwidth {fio_bw} B/s must be positive")
    spec = offloaded.spec
    t_dec, t_pre = compute_times(reference)
    reasons = []
    decode: list[Bounds] = []
    prefill: list[Bounds] = []
    for lp in offloaded.loops:
        if t_dec and lp.decode_steps and lp.decode_latency > 0:
            decode.append(Bounds(spec.batch_size, lp.decode_read_bytes / lp.decode_steps / fio_bw, t_dec,
                                 lp.decode_latency / lp.decode_steps))
        if t_pre and lp.prefill_latency > 0:
            prefill.append(Bounds(spec.batch_size * spec.prompt_len, lp.prefill_read_bytes / fio_bw, t_pre,
                                  lp.prefill_latency))
    if not decode:
        reasons.append("no decode bounds: gen_len 1 has no decode step, or the reference run has none")
    if not prefill:
        reasons.append("no prefill bounds: the reference run measured no prefill")
    per_step = median([v for lp in offloaded.loops if (v := lp.decode_read_bytes_per_step) is not None])
    return RunBounds(fio_bw=fio_bw, decode=tuple(decode), prefill=tuple(prefill), decode_bytes_per_step=per_step,
                     reference=reference.spec.id, reason="; ".join(reasons) or None, bw_source=bw_source,
                     bw_label=bw_label)


def record_bounds(recorder: "Recorder", bounds: RunBounds) -> None:
    """Record the bounds metrics (one sample per offloaded loop) and the summary as extra 'roofline'."""
    for prefix, phase in (("", bounds.decode), ("prefill_", bounds.prefill)):
        if phase:
            for name in METRICS:
                recorder.record(Metric.of(prefix + name, [float(getattr(b, name)) for b in phase]))
    recorder.set_extra("roofline", bounds.summary())
    if bounds.reason:
        recorder.note(f"roofline: {bounds.reason}")


def aio_settings_of(result: "InferenceResult") -> "AioSettings":
    """The aio settings the offloaded run's DeepSpeed config used (its thread key is the installed version's)."""
    from pytest_nvme_ai.measure.aio.runner import AioSettings
    from pytest_nvme_ai.measure.deepspeed.version import DS_AIO_DEFAULTS, thread_key

    given = dict(result.ds_config.get("aio") or {})
    block = {**DS_AIO_DEFAULTS, **given}
    threads = given.get(thread_key(), DS_AIO_DEFAULTS["intra_op_parallelism"])
    return AioSettings(int(block["block_size"]), int(block["queue_depth"]), int(threads),
                       bool(block["single_submit"]), bool(block["overlap_events"]))


# The fio figure an inference test measured for t_io where the fio suite had not run: the next NVMe
# test on the same target reuses it, as it would the fio suite's (one fio run per session, not per test).
T_IO_FIO_BW = CacheKey[float]("t_io_fio_bw", "(target label) -> fio read bw (1M, qd16) measured for t_io")


def fio_bw_of(recorder: "Recorder") -> tuple[float | None, str | None]:
    """This session's fio read bandwidth on this test's target, and where it came from: the fio suite's
    best, else what an earlier inference test measured for t_io; (None, None) when neither ran."""
    target = recorder.target
    if target is None:
        return None, None
    best = recorder.session_cache.get(BEST_FIO_BW, target.label)
    if best:
        return float(best), "the fio suite's best read this session"
    earlier = recorder.session_cache.get(T_IO_FIO_BW, target.label)
    if earlier:
        return float(earlier), "measured for t_io by an earlier test this session (bs 1M, qd 16)"
    return None, None


CURVE_FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def x2_gain(t_io: float, t_compute: float, overlap: float) -> float:
    """Predicted decode throughput gain from twice the read bandwidth, with the overlap share held."""
    return predict_step(t_io, t_compute, overlap) / predict_step(t_io / 2, t_compute, overlap) - 1


def model_curve(tokens_per_step: float, bytes_per_step: float, fio_bw: float, t_compute: float,
                overlap: float) -> list[list[float]]:
    """[read bandwidth B/s, predicted tokens/s] from ⅛ to 4× the drive's fio figure: the report draws it
    (the report imports no measuring code, so the model is evaluated here)."""
    return [[f * fio_bw, predict_throughput(tokens_per_step, bytes_per_step, f * fio_bw, t_compute, overlap)]
            for f in CURVE_FRACTIONS]


def sentence(summary: Mapping[str, Any]) -> str | None:
    """One line for the report: which bound holds, how much is hidden, what ×2 bandwidth would give."""
    d = summary.get("decode")
    if not d:
        return None
    t_io, t_c, t_step, ov = d["t_io"], d["t_compute"], d["t_step"], d["overlap"]
    hidden = min(t_io, t_c)
    gain = x2_gain(t_io, t_c, ov)
    which = "I/O bound (the drive)" if d["bound"] == "io" else "compute bound (the accelerator)"
    shorter = "compute" if d["bound"] == "io" else "I/O"
    un = summary.get("unfitted")
    unfit = (f" Unfitted, batch / max(t_io, t_compute) predicts {un['predicted']:.3g} tokens/s against "
             f"{un['measured']:.3g} measured ({un['error']:+.0%})." if un else "")
    label = summary.get("bw_label")
    if label:  # the figure named: the same one every x2 answer for this case uses
        named = f" (2 x {float(summary.get('fio_bw') or 0) / 1e9:.3g} GB/s, {label})"
        source = ""
    else:
        named = ""
        source = ("" if summary.get("bw_source", "fio") == "fio" else
                  " (t_io from DeepSpeed's aio read bandwidth on this target: fio is not installed here)")
    return (f"Decode is {which}: t_io {_ms(t_io)} vs t_compute {_ms(t_c)} per step, measured "
            f"{_ms(t_step)}; {ov:.0%} of the {shorter} time ({_ms(hidden)}) is hidden. "
            f"Twice the read bandwidth would give about {gain:+.0%} decode throughput{named}.{unfit}{source}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"
