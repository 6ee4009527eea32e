"""Sequential read with direct I/O: the raw bandwidth every offload figure is judged against.

ZeRO-Inference streams parameters from the SSD in large sequential reads, so
this suite measures exactly that shape with fio (libaio, O_DIRECT, no page
cache) across block sizes and queue depths, and records `bw`, `iops` and the
completion-latency tails per point. The grid depends on the profile:

* quick     – bs 128K/1M/2M/16M at iodepth 16, one job: CI on a laptop-class VM.
* standard  – adds iodepth 64 and 4 parallel jobs, plus the seed point.
* full      – adds iodepth 1 (latency-bound reads show what the queue buys).

The seed point (`bs2M-qd8-j16`): the seed study ran DeepSpeed aio with a 2 MB
block and 16 threads ("not the library default"), keeping the default queue
depth of 8. Each DeepSpeed aio thread submits its own share of a read with its
own queue, which is fio's `numjobs` (separate submitters, each on its own slice
of the file), not `iodepth` (one submitter with more requests in flight); so
the point is numjobs=16 at iodepth 8.

Qualification rigor (docs/qualification.md): on standard and full each point runs until steady
state within a budget (`--nvme-ai-ss-budget`); a point not steady is reported but not gated.
`--nvme-ai-precondition` fills the target first; `--nvme-ai-concurrent` adds the same points on
all targets at once; `--nvme-ai-fio-client HOST=DIR` runs them on remote `fio --server` hosts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pytest_nvme_ai.core.ab_protocol import plan_of
from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.measure.fio.runner import FioJob, FioRunner, record_metrics
from pytest_nvme_ai.measure.fio.steady import SteadyPolicy
from pytest_nvme_ai.run import settings
from pytest_nvme_ai.run.session import get_session, profile_of

BLOCK_SIZES = ("128K", "1M", "2M", "16M")


@dataclass(frozen=True)
class Point:
    bs: str
    iodepth: int
    numjobs: int

    @property
    def id(self) -> str:
        return f"bs{self.bs}-qd{self.iodepth}-j{self.numjobs}"


SEED_POINT = Point("2M", 8, 16)


def grid(profile: Profile) -> list[Point]:
    """The measured points for a profile, in a stable order (ids and baselines depend on it)."""
    points = [Point(bs, qd, nj) for nj in profile.fio_numjobs for qd in profile.fio_depths for bs in BLOCK_SIZES]
    return points + ([SEED_POINT] if profile.fio_seed_point else [])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = set(metafunc.fixturenames)
    if not {"bs", "iodepth", "numjobs"} <= names:
        return
    points = grid(profile_of(metafunc.config))
    argvalues = [(p.bs, p.iodepth, p.numjobs) for p in points]
    ids = [p.id for p in points]
    if "remote" in names:
        from pytest_nvme_ai.measure.fio.remote import parse_remote

        remotes = [parse_remote(s) for s in settings.resolve(metafunc.config, "fio_client")]
        _parametrize_mode(metafunc, "remote", [(r, f"host-{r.label}") for r in remotes], argvalues, ids)
    elif "drive_set" in names:
        n = len(get_session(metafunc.config).targets) if settings.resolve(metafunc.config, "concurrent") else 0
        _parametrize_mode(metafunc, "drive_set", [(n, f"x{n}")] if n >= 2 else [], argvalues, ids, off=n or None)
    else:
        metafunc.parametrize("bs,iodepth,numjobs", argvalues, ids=ids)


def _parametrize_mode(metafunc: pytest.Metafunc, name: str, modes: list, argvalues: list, ids: list,
                      off: object = None) -> None:
    """An optional mode: its values x the grid when given; else one test that skips saying how to turn it on
    (instead of one skipped test per point)."""
    if not modes:
        metafunc.parametrize(f"{name},bs,iodepth,numjobs", [(off, None, None, None)], ids=["off"])
        return
    metafunc.parametrize(f"{name},bs,iodepth,numjobs", [(m, *a) for m, _ in modes for a in argvalues],
                         ids=[f"{mid}-{i}" for _, mid in modes for i in ids])


def steady_policy(nvme_ai) -> SteadyPolicy | None:
    """The profile's steady-state budget, or --nvme-ai-ss-budget's; None when off (quick, or budget 0)."""
    prof = nvme_ai.profile
    budget = settings.resolve(nvme_ai.config, "ss_budget")
    budget = prof.ss_budget_s if budget is None else budget
    if not budget:
        return None
    try:
        return SteadyPolicy(budget_s=budget, window_s=prof.ss_window_s, ramp_s=prof.ss_ramp_s)
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-nvme-ai: {exc}") from None


def maybe_precondition(fio, nvme_ai) -> None:
    if settings.resolve(nvme_ai.config, "precondition"):
        info = fio.precondition(nvme_ai.profile.fio_file_bytes)
        nvme_ai.set_extra("precondition", info)
        if not info["done"]:
            nvme_ai.note(f"not preconditioned: {info['reason']}")


def test_seq_read(fio, offload_target, nvme_ai, bs: str, iodepth: int, numjobs: int) -> None:
    maybe_precondition(fio, nvme_ai)
    job = fio.complete(FioJob(name="seqread", rw="read", bs=bs, iodepth=iodepth, numjobs=numjobs, direct=True))
    # The data file is the suite's own, inside the private workdir of the target under test.
    assert offload_target.workdir.resolve() in Path(job.filename).resolve().parents

    policy = steady_policy(nvme_ai)
    result = fio.run(job, steady_state=policy)
    # A/B (--nvme-ai-ab): one repetition per arm per pair, as many pairs as the decision took; arm B's are the metrics
    n = len(result.repetitions) if ab_mode(nvme_ai) else nvme_ai.repeat
    if policy is not None and not ab_mode(nvme_ai):
        point = fio.last_steady_state
        assert len(point["repetitions"]) == nvme_ai.repeat and point["criterion"] == policy.criterion()
        # fio never runs a repetition past the budget (it may stop well before, once steady).
        assert all(r["ran_s"] <= policy.budget_s + 1 for r in point["repetitions"])

    assert len(result.repetitions) == n and n >= 1
    for i, rep in enumerate(result.repetitions, 1):
        assert rep.error == 0, f"repetition {i}: fio reported error {rep.error}"
        # fio moved data, at least one full block per job, and timed it: the figures are measurements.
        assert rep.io_bytes >= job.bs_bytes * numjobs, f"repetition {i} read only {rep.io_bytes} bytes"
        assert rep.runtime_ms > 0 and rep.bw_bytes > 0
        assert rep.clat_p50 is not None and rep.clat_p50 <= rep.clat_p99 <= rep.clat_p999  # type: ignore[operator]
    assert set(nvme_ai.metrics()) >= {"bw", "iops", "clat_p50", "clat_p99", "clat_p999"}
    assert nvme_ai.metrics()["bw"].n == n


def ab_mode(nvme_ai) -> bool:
    plan = plan_of(nvme_ai)
    return plan is not None and plan.overrides is not None


def skip_in_ab_mode(nvme_ai, what: str) -> None:
    if ab_mode(nvme_ai):
        pytest.skip(f"A/B pairs (--nvme-ai-ab) run for test_seq_read; {what} has no A/B arms yet")


def test_seq_read_concurrent(nvme_ai, drive_set: int | None, bs: str, iodepth: int, numjobs: int) -> None:
    """The point on every target at once: one fio run, one job (reporting group) per target."""
    from pytest_nvme_ai.measure.fio.hostbound import judge
    from pytest_nvme_ai.measure.fio.multi import as_concurrent_job, run_concurrent
    from pytest_nvme_ai.measure.fio.runner import fio_missing_reason

    targets = get_session(nvme_ai.config).targets
    skip_in_ab_mode(nvme_ai, "the concurrent mode")
    if drive_set is None:
        pytest.skip("concurrent mode is off (--nvme-ai-concurrent runs the seq-read points on all targets at once)")
    if len(targets) < 2:
        pytest.skip(f"--nvme-ai-concurrent needs 2 or more --nvme-ai-target directories, got {len(targets)}")
    if fio_missing_reason():
        pytest.skip(fio_missing_reason())
    runners = [FioRunner(t, nvme_ai) for t in targets]
    jobs = []
    for t, runner in zip(targets, runners):
        base = runner.complete(FioJob(name="seqread", rw="read", bs=bs, iodepth=iodepth, numjobs=numjobs))
        jobs.append(as_concurrent_job(base, t.label))
    labels = [t.label for t in targets]
    results = [run_concurrent(jobs, labels, targets[0].workdir, nvme_ai.artifact_dir, f"concurrent-{i}",
                              nvme_ai.timeout) for i in range(1, nvme_ai.repeat + 1)]

    # One test over the set of drives: a different set of devices is another test (incomparable).
    nvme_ai.set_params(bs=jobs[0].bs, iodepth=iodepth, numjobs=numjobs, ioengine=jobs[0].ioengine, direct=True,
                       size=jobs[0].size, drives=sorted(t.device.slug() for t in targets), n_drives=len(targets))
    nvme_ai.record_samples("bw", [r.last_done_bw for r in results])
    nvme_ai.record_samples("bw_first_done", [r.first_done_bw for r in results])
    for i, label in enumerate(labels):
        nvme_ai.record_samples(f"bw_drive_{label}", [r.per_job[i].bw_bytes for r in results],
                               unit="B/s", better="higher", gated=False)
    nvme_ai.set_extra("concurrent", [r.to_dict() for r in results])
    flags = [judge(j.cpu_usr, j.cpu_sys, who=f"fio job {j.jobname}") for r in results for j in r.per_job]
    bound = [f for f in flags if f.flagged]
    nvme_ai.set_extra("host_bound", {"flagged": bool(bound), "reason": (bound or flags)[0].reason,
                                     "repetitions": [f.to_dict() for f in flags]})
    for i in range(1, len(results) + 1):
        nvme_ai.add_artifact(f"fio job file concurrent-{i}", nvme_ai.artifact_dir / f"concurrent-{i}.fio")
    for r in results:
        assert all(j.io_bytes >= jobs[0].bs_bytes for j in r.per_job), "a drive of the set read nothing"
        # First-done counts every drive at its own rate; last-done waits for the slowest: never more.
        assert r.last_done_bw <= r.first_done_bw * 1.001


def test_seq_read_remote(nvme_ai, remote, bs: str, iodepth: int, numjobs: int) -> None:
    """The point on a remote drive through fio's client/server mode (`fio --server` on that host)."""
    from pytest_nvme_ai.measure.fio.job import combine_results
    from pytest_nvme_ai.measure.fio.remote import run_remote
    from pytest_nvme_ai.measure.fio.runner import find_fio

    skip_in_ab_mode(nvme_ai, "the remote mode")
    if remote is None:
        pytest.skip("no remote drive: --nvme-ai-fio-client HOST=DIR runs these points on a host's `fio --server`")
    exe = find_fio()
    if exe is None:
        pytest.skip("fio not found: apt-get install fio")
    prof = nvme_ai.profile
    job = FioJob(name="seqread", rw="read", bs=bs, iodepth=iodepth, numjobs=numjobs, runtime=prof.fio_runtime_s,
                 time_based=True, ramp_time=prof.fio_ramp_s or None)
    if numjobs > 1:
        per_job = prof.fio_file_bytes // numjobs // job.bs_bytes * job.bs_bytes
        job = replace(job, size=per_job, offset_increment=per_job)
    run_id = get_session(nvme_ai.config).run_id
    reps = run_remote(remote, job, run_id, prof.fio_file_bytes, nvme_ai.repeat, nvme_ai.artifact_dir, nvme_ai.timeout,
                      exe=exe)
    result = combine_results(reps)
    record_metrics(nvme_ai, result)
    nvme_ai.set_params(**job.params(), host=remote.host, port=remote.port, remote_dir=remote.directory)
    nvme_ai.set_extra("fio_runs", [r.summary() for r in reps])
    nvme_ai.add_artifact("fio remote job file", nvme_ai.artifact_dir / f"seqread-{remote.label}.fio")
    assert len(reps) == nvme_ai.repeat and all(r.bw_bytes > 0 and r.io_bytes >= job.bs_bytes for r in reps)
    assert all(r.hostname for r in reps), "the figures must come from the fio server"
