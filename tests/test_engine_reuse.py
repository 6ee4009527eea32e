"""One worker per engine (measure/zero_inference/{worker,pool,engine}.py).

The pool tests use a stand-in worker (a few lines of Python speaking the same protocol) so that
eviction, swap-folder removal and deaths are fast to check; the e2e tests run the real worker with
DeepSpeed on the tiny OPT (slow: select with `-k e2e`).
"""
from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.measure.zero_inference.pool import EnginePool, WorkerGone
from pytest_nvme_ai.measure.zero_inference.progress import CaseProgress, format_duration
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec
from pytest_nvme_ai.measure.zero_inference.remote_worker import engine_key

STAND_IN = textwrap.dedent('''
    import json, os, sys, time
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    cases = 0
    for line in sys.stdin:
        job = json.loads(line)["job"]
        hook = job.get("hook")
        if hook == "die":
            os._exit(7)
        if hook == "hang":
            time.sleep(60)
        print(json.dumps({"event": "progress", "stage": "loop", "done": 1, "total": 1, "seconds": 0.01}), flush=True)
        print("log line of case", job["name"], file=sys.stderr, flush=True)
        cases += 1
        print(json.dumps({"event": "result", "outcome": job.get("outcome", "ok"), "engine_reused": cases > 1,
                          "pid": os.getpid()}), flush=True)
''')


@pytest.fixture
def stand_in(tmp_path: Path) -> list[str]:
    script = tmp_path / "stand_in_worker.py"
    script.write_text(STAND_IN)
    return [sys.executable, str(script)]


def test_engine_key_ignores_per_case_fields() -> None:
    a = InferenceSpec(model="opt-125m", batch_size=1, prompt_len=32, gen_len=8, offload="nvme")
    assert engine_key(a) == engine_key(a.with_(batch_size=8, prompt_len=512, gen_len=32, loops=5, warmup=2,
                                              kv_offload=True, test_hook="crash"))
    for other in (a.with_(offload="cpu"), a.with_(quant_bits=4), a.with_(dtype="bf16"), a.with_(pin_memory=True),
                  a.with_(aio={"block_size": 16 << 20}), a.with_(model="opt-350m"), a.with_(seed=1)):
        assert engine_key(other) != engine_key(a)
    cpu = a.with_(offload="cpu")
    assert engine_key(cpu) == engine_key(cpu.with_(aio={"block_size": 1 << 20}))  # aio is read for NVMe only
    assert engine_key(a) == engine_key(a.with_(quant_group_size=128))            # group size: only when quantized


def test_the_session_registry_alone_closes_the_pool_and_the_fork_server(stand_in: list[str], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What plugin.py's pytest_sessionfinish does (ChildRegistry.close_all) ends the pool's workers and removes
    their swap files, with no help from sys.modules or atexit; closing again is harmless (idempotent)."""
    from pytest_nvme_ai.core.lifecycle import ChildRegistry
    from pytest_nvme_ai.measure.deepspeed.forkserver import fork_server
    from pytest_nvme_ai.measure.zero_inference import pool as pool_mod

    registry = ChildRegistry()
    monkeypatch.setitem(pool_mod._POOL, "pool", EnginePool(max_alive=1, argv=stand_in))
    fork_server().register(registry)             # as dispatch.run_in_worker does, before the pool
    pool = pool_mod.shared_pool(registry)
    swap = tmp_path / "engine-a"
    swap.mkdir()
    pid = pool.run("A", {"name": "a1"}, timeout=30, swap_dir=swap, estimate=0)["pid"]
    assert registry.names() == ["deepspeed fork server", "zero_inference engine pool"]  # the pool closes first
    assert registry.close_all() == []
    assert not pool.workers and not swap.exists() and not Path(f"/proc/{pid}").exists()
    pool.close_all()
    pool_mod.close_shared_pool()                 # the atexit hook, later: nothing left to do


def test_pool_reuses_a_worker_and_evicts_the_oldest(stand_in: list[str], tmp_path: Path) -> None:
    pool = EnginePool(max_alive=1, argv=stand_in)
    swap_a, swap_b = tmp_path / "engine-a", tmp_path / "engine-b"
    swap_a.mkdir(), swap_b.mkdir()
    first = pool.run("A", {"name": "a1"}, timeout=30, swap_dir=swap_a, estimate=0)
    second = pool.run("A", {"name": "a2"}, timeout=30, swap_dir=swap_a, estimate=0)
    assert (first["engine_reused"], second["engine_reused"]) == (False, True)
    assert first["pid"] == second["pid"] and swap_a.exists()
    pool.run("B", {"name": "b1"}, timeout=30, swap_dir=swap_b, estimate=0)
    assert list(pool.workers) == ["B"] and not swap_a.exists()  # evicted: its swap files went with it
    pool.close_all()
    assert not swap_b.exists() and not pool.workers
    assert pool.stats().workers_started == 2 and pool.stats().reused == 1


def test_pool_keeps_two_only_when_they_fit(stand_in: list[str]) -> None:
    pool = EnginePool(max_alive=2, argv=stand_in)
    pool.run("A", {"name": "a"}, timeout=30, swap_dir=None, estimate=1)
    pool.run("B", {"name": "b"}, timeout=30, swap_dir=None, estimate=1)
    assert list(pool.workers) == ["A", "B"]
    pool.run("C", {"name": "c"}, timeout=30, swap_dir=None, estimate=1 << 60)  # cannot sit beside anything
    assert list(pool.workers) == ["C"]
    pool.close_all()


def test_a_dead_worker_is_reported_and_the_next_case_starts_fresh(stand_in: list[str], tmp_path: Path) -> None:
    pool = EnginePool(max_alive=1, argv=stand_in)
    swap = tmp_path / "engine"
    swap.mkdir()
    pid = pool.run("A", {"name": "a1"}, timeout=30, swap_dir=swap, estimate=0)["pid"]
    log = tmp_path / "case.log"
    with pytest.raises(WorkerGone) as gone:
        pool.run("A", {"name": "a2", "hook": "die"}, timeout=30, swap_dir=swap, estimate=0, case_log=log)
    assert gone.value.returncode == 7 and not gone.value.timed_out and not swap.exists()
    assert not pool.workers
    again = pool.run("A", {"name": "a3"}, timeout=30, swap_dir=None, estimate=0)
    assert again["pid"] != pid and again["engine_reused"] is False
    pool.close_all()


def test_a_hung_worker_is_killed_at_the_timeout(stand_in: list[str], tmp_path: Path) -> None:
    pool = EnginePool(max_alive=1, argv=stand_in)
    with pytest.raises(WorkerGone) as gone:
        pool.run("A", {"name": "h", "hook": "hang"}, timeout=1.0, swap_dir=None, estimate=0)
    assert gone.value.timed_out and not pool.workers


def test_a_failed_case_ends_its_worker(stand_in: list[str]) -> None:
    pool = EnginePool(max_alive=1, argv=stand_in)
    msg = pool.run("A", {"name": "x", "outcome": "oom"}, timeout=30, swap_dir=None, estimate=0)
    assert msg["outcome"] == "oom" and not pool.workers


def test_case_log_is_the_workers_output_during_the_case(stand_in: list[str], tmp_path: Path) -> None:
    pool = EnginePool(max_alive=1, argv=stand_in)
    pool.run("A", {"name": "first"}, timeout=30, swap_dir=None, estimate=0, case_log=tmp_path / "1.log")
    pool.run("A", {"name": "second"}, timeout=30, swap_dir=None, estimate=0, case_log=tmp_path / "2.log")
    assert (tmp_path / "2.log").read_text().strip() == "log line of case second"
    pool.close_all()


def test_progress_lines_and_eta() -> None:
    lines: list[str] = []
    p = CaseProgress("opt-13b-bs32-nvme-q4", warmup=1, loops=3, say=lines.append, position="3/12")
    p("build", 0, 1, 0.0)
    p("build", 1, 1, 125.0)
    p("warmup", 1, 1, 40.0)
    p("loop", 1, 3, 44.0)
    p("loop", 2, 3, 42.0)
    p("loop", 3, 3, 42.0)
    assert lines[1] == "[3/12] opt-13b-bs32-nvme-q4: engine built in 2m05s"
    assert lines[3] == "[3/12] opt-13b-bs32-nvme-q4: loop 1/3 (44.0 s), about 1m24s left in this case"  # 2 × 42 s
    assert lines[-1].endswith("loop 3/3 (42.0 s)")
    assert format_duration(3 * 3600 + 61) == "3h01m"


# ---- the real worker (DeepSpeed, tiny OPT) -----------------------------------------------------

@pytest.fixture(scope="module")
def e2e_ready() -> None:
    from pytest_nvme_ai.measure.deepspeed.ops import ensure_aio_op
    from pytest_nvme_ai.measure.zero_inference.runner import inference_missing_reason

    reason = inference_missing_reason() or ensure_aio_op()
    if reason:
        pytest.skip(reason)


def _runner(tmp_path: Path, name: str, **kw: Any) -> Any:
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.core.targets import Target
    from test_zero_inference_runner import recorder

    (tmp_path / name).mkdir()
    target = Target(path=tmp_path / "target", label="t", run_id="e2e")
    target.path.mkdir(exist_ok=True)
    return ZeroInferenceRunner(target, recorder(tmp_path / name, timeout=600), **kw)


def test_e2e_cases_sharing_an_engine_share_one_worker(tmp_path: Path, e2e_ready: None) -> None:
    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool

    pool = shared_pool()
    pool.close_all()
    started = pool.started
    lines: list[str] = []
    spec = InferenceSpec(model="opt-tiny", batch_size=1, prompt_len=16, gen_len=4, offload="nvme", loops=2, warmup=1)
    first_runner = _runner(tmp_path, "a", loop_progress=lines.append, position="1/2")
    first = first_runner.run(spec)
    swap = list((tmp_path / "target").rglob("*.swp"))
    second_runner = _runner(tmp_path, "b")
    second = second_runner.run(spec.with_(batch_size=2, gen_len=6))
    assert first.ok and second.ok, (first.error, first.log_tail, second.error, second.log_tail)
    assert pool.started == started + 1                                  # one worker, one build
    assert second_runner.recorder.extra["engine"]["reused"] is True
    assert first_runner.recorder.extra["engine"]["forked"] is True       # from the fork server: no imports of its own
    assert first_runner.recorder.extra["engine"]["import_s"] < 1.0
    assert first_runner.recorder.extra["swap_sync_seconds"] >= 0.0     # the build's swap files were fsynced
    assert len(second.warmup) == 1 and len(second.loops) == 2           # its own warm-up, on its own shape
    assert all(lp.new_tokens == 6 for lp in second.loops) and all(lp.read_bytes > 0 for lp in second.loops)
    assert swap and all(p.exists() for p in swap)                        # laid out once, still there
    assert "engine built" in lines[1] and lines[-1].startswith("[1/2] opt-tiny-bs1-p16-g4-nvme-q16: loop 2/2")
    assert "loop 2/2" in Path(second.log_path).read_text()               # the case's slice of the worker log
    pool.close_all()
    assert not list((tmp_path / "target").rglob("*.swp"))                # removed with the worker


def test_e2e_a_killed_worker_is_not_oom_and_the_next_case_builds_afresh(tmp_path: Path, e2e_ready: None) -> None:
    from pytest_nvme_ai.measure.zero_inference.pool import shared_pool

    pool = shared_pool()
    spec = InferenceSpec(model="opt-tiny", batch_size=1, prompt_len=16, gen_len=4, offload="cpu", loops=1, warmup=0)
    assert _runner(tmp_path, "a").run(spec).ok
    killed = _runner(tmp_path, "b").run(spec.with_(test_hook="sigkill"))  # a kill -9 mid-engine, not the OOM killer
    assert killed.outcome == ("oom" if "cannot tell" in (killed.error or "") else "error") and not pool.workers
    again_runner = _runner(tmp_path, "c")
    assert again_runner.run(spec).ok and again_runner.recorder.extra["engine"]["reused"] is False
    pool.close_all()


def test_e2e_per_case_path_still_runs(tmp_path: Path, e2e_ready: None) -> None:
    runner = _runner(tmp_path, "a")
    runner.options = replace(runner.options, engine_reuse=False)
    result = runner.run(InferenceSpec(model="opt-tiny", batch_size=1, prompt_len=16, gen_len=4, offload="nvme",
                                      loops=1, warmup=0))
    assert result.ok and "engine" not in runner.recorder.extra
    assert not list((tmp_path / "target").rglob("*.swp"))


# ---- forked workers (zygote.py): the fork server imported torch, DeepSpeed and transformers once ----

def test_fork_only_where_it_is_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_nvme_ai.measure.deepspeed.forkserver import ForkServer, _fingerprint

    server = ForkServer()
    assert server.can_fork("cpu", None, wrapped=False) is None
    assert "cuda" in (server.can_fork("cuda", None, wrapped=False) or "")    # a probed GPU does not survive a fork
    assert "cgroup" in (server.can_fork("cpu", None, wrapped=True) or "")    # a capped run starts inside its cgroup
    other = {**os.environ, "NVME_AI_TEST_ONLY_VARIABLE": "1"}
    assert "environment" in (server.can_fork("cpu", other, wrapped=False) or "")
    server._env = _fingerprint(os.environ)                                    # as if started now
    changed = {**os.environ, "PYTEST_CURRENT_TEST": "tests/x.py::y (call)"}   # pytest's own variables do not count
    monkeypatch.setenv("PYTEST_CURRENT_TEST", changed["PYTEST_CURRENT_TEST"])
    assert server.can_fork("cpu", changed, wrapped=False) is None
    monkeypatch.setenv("NVME_AI_TEST_ONLY_VARIABLE", "1")                     # changed since the server started
    assert "since the fork server started" in (server.can_fork("cpu", None, wrapped=False) or "")
    server.broken = "EOFError: the server died"                               # a failed fork: exec'd from then on
    monkeypatch.delenv("NVME_AI_TEST_ONLY_VARIABLE")
    assert "failed" in (server.can_fork("cpu", None, wrapped=False) or "")


def _hook_job(hook: str | None) -> dict[str, Any]:
    spec = InferenceSpec(model="opt-tiny", batch_size=1, prompt_len=16, gen_len=4, offload="cpu", loops=1, warmup=0,
                         test_hook=hook)
    return {"spec": spec.to_dict(), "ds_config": None, "accelerator": "cpu", "nvme_path": None}


def test_forked_worker_dies_and_times_out_like_an_execd_one(tmp_path: Path) -> None:
    """The fork server reports the exit status, so a SIGKILL reads -9 (oom or a kill, from the kernel log), a crash ends the
    worker with its error, and a hang is killed at the timeout with its whole session."""
    from pytest_nvme_ai.measure.zero_inference.pool import EnginePool

    pool = EnginePool(max_alive=1)
    crash = pool.run("A", _hook_job("crash"), timeout=120, swap_dir=None, estimate=0, fork_for="cpu",
                     case_log=tmp_path / "crash.log")
    assert crash["outcome"] == "error" and "simulated crash" in crash["error"] and crash["worker_forked"] is True
    assert "test hook 'crash'" in (tmp_path / "crash.log").read_text()     # the worker's stderr went to its log
    assert not pool.workers
    with pytest.raises(WorkerGone) as killed:
        pool.run("A", _hook_job("sigkill"), timeout=120, swap_dir=None, estimate=0, fork_for="cpu")
    assert killed.value.returncode == -9 and not killed.value.timed_out
    worker = pool.worker_for("A", None, 0, fork_for="cpu")
    pid = worker.pid
    with pytest.raises(WorkerGone) as hung:
        pool.run("A", _hook_job("sleep:60"), timeout=3, swap_dir=None, estimate=0, fork_for="cpu")
    assert hung.value.timed_out and not pool.workers
    assert worker.forked and not worker.alive and not Path(f"/proc/{pid}").exists()  # killed and reaped


def test_without_fork_for_the_worker_is_execd(tmp_path: Path) -> None:
    """What --nvme-ai-fork-workers 0 (engine.run_in_worker passes no fork_for) and a GPU come to."""
    from pytest_nvme_ai.measure.zero_inference.pool import EnginePool

    pool = EnginePool(max_alive=1)
    msg = pool.run("A", _hook_job("crash"), timeout=120, swap_dir=None, estimate=0, fork_for=None)
    assert msg["outcome"] == "error" and msg["worker_forked"] is False


def test_fork_server_registers_once_so_the_pool_always_closes_before_it() -> None:
    """Every forked worker holds the server's alive pipe: the server can end only after the pool ended its
    workers. A later test's start re-registering the server ahead of the pool hung the session's end."""
    from pytest_nvme_ai.core.lifecycle import ChildRegistry
    from pytest_nvme_ai.measure.deepspeed.forkserver import REGISTRY_NAME, ForkServer

    reg, server = ChildRegistry(), ForkServer()
    server.register(reg)
    reg.register("engine pool", lambda: None)
    server.register(reg)                     # the next test's prepare(): must not move it ahead of the pool
    assert reg.names() == [REGISTRY_NAME, "engine pool"]   # closed newest first: the pool, then the server
