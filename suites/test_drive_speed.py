"""What a faster or slower drive would give: one drive, its read bandwidth capped by the block throttle.

Per case, for each cap (1, ½ and ¼): fio reads the target uncapped just before, a cgroup caps reads
of the target's disk at that fraction of fio's figure (`pytest_nvme_ai.measure.throttle`), fio
inside it checks the cap (±10%, else the point is refused with both figures; at 1× only a cap that
leaks is refused, since there the cap is the drive's own speed), and a fresh ZeRO-Inference child runs inside
it (the child joins the cgroup through a wrapper before it execs, so all its reads are capped).
The two-bound model (docs/roofline.md) predicts each cap from t_compute (a resident-weights run)
and the overlap of the uncapped point alone.

Recorded: `cap<pct>_decode_throughput` per cap (tokens/s, one sample per loop), the prediction per
cap and the refusals in extra `drive_speed`, and `bandwidth_sensitivity` (throughput gain from
doubling the bandwidth, measured between caps 1 and ½); the gain predicted above the drive's own
speed goes next to it in the extra data. Skips with the reason when the throttle cannot work here:
not root, no io/blkio controller, or a target on device-mapper or overlay.
"""
from __future__ import annotations

from typing import Any

import pytest

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import InferenceCase
from pytest_nvme_ai.run.session import profile_of
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

CAPS = (1.0, 0.5, 0.25)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "drive_case" not in metafunc.fixturenames:
        return
    grid = profile_of(metafunc.config).drive_speed_cases   # one case in quick, more on the runners' profiles
    metafunc.parametrize("drive_case", [pytest.param(c, marks=[pytest.mark.gpu] if c.gpu else [],
                                                     id=f"{c.model}-bs{c.batch_size}") for c in grid])


def _spec(drive_case: InferenceCase, nvme_ai: Any) -> InferenceSpec:
    c = drive_case
    return InferenceSpec(model=c.model, batch_size=c.batch_size, offload="nvme", prompt_len=c.prompt_len,
                         gen_len=c.gen_len, pin_memory=c.gpu, loops=nvme_ai.profile.drive_speed_loops,
                         warmup=nvme_ai.profile.zi_warmup)


def test_drive_speed(drive_case: InferenceCase, zero_inference: Any, fio: Any, nvme_ai: Any,
                     request: pytest.FixtureRequest) -> None:
    from pytest_nvme_ai.measure.fio.runner import FioJob, fio_missing_reason
    from pytest_nvme_ai.measure.throttle import Throttle, block_device_of, throttle_missing_reason
    from pytest_nvme_ai.measure.zero_inference.drive_speed import cap_refusal, drift_note, point_from_loops, predict
    from pytest_nvme_ai.measure.zero_inference.pairing import compute_times

    target = nvme_ai.target
    reason = throttle_missing_reason(target.workdir) or fio_missing_reason()
    if reason:
        nvme_ai.set_extra("drive_speed", {"skipped": reason})
        pytest.skip(f"drive-speed emulation: {reason}")
    spec = _spec(drive_case, nvme_ai)
    nvme_ai.set_params(**spec.params(zero_inference.accelerator), caps=list(CAPS))
    ref = zero_inference.run(spec.with_(offload="none", aio=None), prefix="compute_none", reuse=True, record=False)
    if not ref.ok:
        pytest.fail(f"resident-weights run {ref.spec.id} ended {ref.outcome}: {ref.error}\n{ref.log_tail}",
                    pytrace=False)
    t_compute, _ = compute_times(ref)
    assert t_compute, "the resident-weights run measured no decode step"
    job = FioJob(name="drive-speed", bs="1M", iodepth=16)
    device = block_device_of(target.workdir)
    points, drive_bws = [], []
    for fraction in CAPS:
        # fio uncapped just before each cap: the build machine's disk moved 1.94 -> 0.80 GB/s within ten
        # minutes, and a cap taken from one early figure was then refused at every later point.
        drive_bw = fio.run(job, repeat=1, record=False).bw_bytes
        drive_bws.append(drive_bw)
        cap = drive_bw * fraction
        with Throttle(device, cap, registry=nvme_ai.children) as th:
            fio_in = fio.run(job, repeat=1, record=False, wrap=th.wrap()).bw_bytes
            refused = cap_refusal(cap, fio_in, fraction=fraction)
            drifted = drift_note(cap, fio_in, fraction)
            if drifted and not refused:
                nvme_ai.note(drifted)
            if refused:
                nvme_ai.note(f"cap {fraction:g}: {refused}")
                points.append(_refused(fraction, cap, fio_in, refused))
                continue
            res = zero_inference.run(spec, prefix=f"cap{round(fraction * 100)}", record=False, wrap=th.wrap())
        if not res.ok:
            pytest.fail(f"capped run at {fraction:g} × {drive_bw / 1e6:.0f} MB/s ended {res.outcome}: {res.error}\n"
                        f"{res.log_tail}", pytrace=False)
        assert all(lp.read_bytes > 0 for lp in res.loops), "a capped loop read nothing from the target"
        points.append(point_from_loops(fraction, cap, fio_in, res.loops, spec.batch_size, spec.gen_len))
    sweep = predict(points, t_compute, spec.batch_size)
    nvme_ai.set_extra("drive_speed", {**sweep.summary(), "drive_bw": drive_bws[0], "drive_bws": drive_bws,
                                      "device": device.dev,
                                      "join": "a /bin/sh wrapper writes its pid to cgroup.procs, then execs"})
    for p in sweep.accepted:
        nvme_ai.record(Metric.of(f"{p.label}_decode_throughput", p.decode_throughput, unit="tokens/s",
                                 better="higher", gated=False))
    sensitivity = sweep.sensitivity_measured()
    if sensitivity is not None:
        nvme_ai.record(Metric.of("bandwidth_sensitivity", [sensitivity]))
    else:
        nvme_ai.note("bandwidth_sensitivity not measured: caps 1 and ½ were not both accepted")
    assert sweep.accepted, "every cap point was refused: " + "; ".join(p.refused or "" for p in sweep.points)
    # halving the bandwidth never makes an offloaded run faster (beyond noise)
    by_fraction = {p.fraction: p.measured for p in sweep.accepted}
    if 1.0 in by_fraction and 0.25 in by_fraction:
        assert (by_fraction[0.25] or 0) <= 1.1 * (by_fraction[1.0] or 0)


def _refused(fraction: float, cap: float, fio_in: float, why: str) -> Any:
    from pytest_nvme_ai.measure.zero_inference.drive_speed import CapPoint

    return CapPoint(fraction, cap, fio_in, refused=why)
