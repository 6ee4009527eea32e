"""KV cache on the drive (measure/kv_cache): specs, records, metrics, the tier verdict, the child launch,
and real LMCache runs of the child (skipped, with the reason, where the KV environment is absent)."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_nvme_ai.core.catalog import CATALOG
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.kv_cache.child_engine import busy_seconds, fs_type
from pytest_nvme_ai.measure.kv_cache.metrics import kv_metrics
from pytest_nvme_ai.measure.kv_cache.result import KvResult, ServingRequest, StorageSequence, TierStats
from pytest_nvme_ai.measure.kv_cache.runner import ChildExit, KvCacheRunner, classify, kv_missing_reason
from pytest_nvme_ai.core.profiles import PROFILES
from pytest_nvme_ai.measure.kv_cache.spec import KV_SHAPES, KvSpec, SpecError, specs_for
from pytest_nvme_ai.measure.kv_cache.tier import judge_tier


class FakeRecorder:
    """The parts of the Recorder protocol the runner uses, recording into plain dicts."""

    def __init__(self, artifact_dir: Path, timeout: int = 600) -> None:
        self.artifact_dir = artifact_dir
        self.timeout = timeout
        self.nodeid = "tests/test_kv_cache.py::test_case[x]"
        self.params: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.recorded: dict[str, Metric] = {}
        self.artifacts: dict[str, str] = {}

    def set_params(self, **kw: Any) -> None:
        self.params.update(kw)

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def record(self, metric: Metric) -> Metric:
        self.recorded[metric.name] = metric
        return metric

    def add_artifact(self, label: str, path: Path | str) -> str:
        self.artifacts[label] = str(path)
        return str(path)

    def metrics(self) -> dict[str, Metric]:
        return dict(self.recorded)


def make_runner(tmp_path: Path, timeout: int = 600) -> KvCacheRunner:
    (tmp_path / "target").mkdir(exist_ok=True)
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    target = Target(path=tmp_path / "target", label="t", run_id="test")
    return KvCacheRunner(target, FakeRecorder(tmp_path / "artifacts", timeout))  # type: ignore[arg-type]


# ---- specs ---------------------------------------------------------------------------------------
def test_kv_shapes_have_the_models_per_token_sizes() -> None:
    assert KV_SHAPES["llama-3-8b"].bytes_per_token == 128 << 10
    assert KV_SHAPES["llama-3-70b"].bytes_per_token == 320 << 10
    assert KV_SHAPES["tiny-llama"].bytes_per_token == 8 << 10


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_spec_is_valid_and_needs_the_drive(name: str) -> None:
    specs = specs_for(PROFILES[name])
    assert {s.case for s in specs} == {"serving", "storage"}
    assert len({s.id for s in specs}) == len(specs)
    for s in specs:
        s.validate()
        # the memory tier stages one request but cannot hold the working set: reuse must come from the drive
        assert s.largest_request_bytes < s.cpu_tier_mib << 20 < s.working_set_bytes
        assert KvSpec.from_dict(s.to_dict()) == s


def test_profile_knobs_size_the_specs() -> None:
    class Knobs:
        kv_serving = (12, 4, 1984)
        kv_storage = (("llama-3-70b", 8, 2048),)
    serving, storage = specs_for(Knobs())
    assert (serving.users, serving.rounds, serving.system_tokens) == (12, 4, 1984)
    assert storage.shape == "llama-3-70b" and storage.kv.bytes_per_token * 2048 * 8 == storage.working_set_bytes


@pytest.mark.parametrize("change, words", [
    ({"case": "training"}, "case"),
    ({"shape": "gpt-9"}, "shape"),
    ({"seq_tokens": 1000}, "multiple of chunk_size"),
    ({"cpu_tier_mib": 1}, "too small to stage"),
    ({"cpu_tier_mib": 4096}, "never come from the drive"),
    ({"sequences": 0}, "positive integer"),
    ({"test_hook": "explode"}, "test_hook"),
])
def test_bad_specs_say_what_is_wrong(change: dict[str, Any], words: str) -> None:
    base = specs_for(PROFILES["quick"])[1]
    with pytest.raises(SpecError, match=words):
        base.with_(**change).validate()


def test_unknown_spec_keys_are_refused() -> None:
    with pytest.raises(SpecError, match="unknown spec key"):
        KvSpec.from_dict({"case": "storage", "seqs": 3})


# ---- records, metrics, verdicts --------------------------------------------------------------------
def storage_result(**tier: Any) -> KvResult:
    spec = KvSpec(case="storage", shape="llama-3-8b", sequences=2, seq_tokens=256, cpu_tier_mib=40)
    per_seq = 256 * spec.kv.bytes_per_token
    stats = dict(chunk_files_written=2, chunk_files_read=2, bytes_written=2 * per_seq, bytes_read=2 * per_seq,
                 opens_direct=4, proc_write_bytes=2 * per_seq, proc_read_bytes=2 * per_seq, tokens_stored=512,
                 tokens_hit=512, tokens_hit_disk=512)
    stats.update(tier)
    seqs = tuple(StorageSequence(tokens=256, store_seconds=0.5, retrieve_seconds=0.4, retrieve_device_seconds=0.3,
                                 retrieve_host_seconds=0.1, hit_tokens=256, disk_chunks=1, bit_exact=True)
                 for _ in range(2))
    return KvResult(spec=spec.to_dict(), outcome="ok", cache_dir="/x", fs_type="ext4", chunk_bytes=spec.chunk_bytes,
                    tier=TierStats(**stats), storage=seqs, chunk_read_seconds=(0.3, 0.3))


def test_result_round_trips_through_json() -> None:
    r = storage_result()
    q = ServingRequest(user=0, round=1, prompt_tokens=600, hit_tokens=512, disk_chunks=1, ttft_warm=0.1,
                       ttft_cold=0.3, retrieve_seconds=0.05, store_seconds=0.02, token_match=True)
    r = KvResult(**{**r.__dict__, "serving": (q,)})
    back = KvResult.from_dict(__import__("json").loads(r.to_json()))
    assert back == r and back.tier.odirect_verified


def test_storage_metrics_are_catalog_metrics_per_sequence() -> None:
    m = kv_metrics(storage_result())
    assert set(m) <= set(CATALOG)
    assert m["kv_store_tokens_per_s"].samples == (512.0, 512.0)
    assert m["kv_retrieve_tokens_per_s"].value == pytest.approx(640.0)
    assert m["kv_retrieve_device_p95"].value == pytest.approx(0.3)
    assert m["kv_retrieve_host_p95"].value == pytest.approx(0.1)
    assert m["kv_write_bytes_per_token"].value == m["kv_read_bytes_per_token"].value == 128 << 10
    assert kv_metrics(KvResult(spec={}, outcome="error")) == {}


def test_serving_metrics_use_the_reuse_requests_only() -> None:
    def req(round_: int, warm: float, cold: float) -> ServingRequest:
        return ServingRequest(user=0, round=round_, prompt_tokens=1000, hit_tokens=768 if round_ else 0,
                              disk_chunks=1, ttft_warm=warm, ttft_cold=cold, retrieve_seconds=0.01,
                              store_seconds=0.01, token_match=True)
    r = KvResult(spec=KvSpec(case="serving").to_dict(), outcome="ok",
                 serving=(req(0, 0.5, 0.5), req(1, 0.1, 0.4), req(2, 0.2, 0.4)))
    m = kv_metrics(r)
    assert m["kv_ttft_warm"].samples == (0.1, 0.2)
    assert m["kv_ttft_warm_vs_cold"].samples == (0.25, 0.5)
    assert m["kv_hit_rate"].value == pytest.approx(0.768)
    assert m["kv_restore_match"].value == 1.0


def test_a_tier_that_reached_the_drive_is_live() -> None:
    assert judge_tier(storage_result()).live


@pytest.mark.parametrize("change, words", [
    ({"fs_type": "tmpfs"}, "tmpfs (memory)"),
    ({"tier": TierStats()}, "wrote no chunk file"),
    ({"tier": TierStats(bytes_written=1 << 20, proc_write_bytes=1 << 20, bytes_read=1 << 20, tokens_hit_disk=8,
                        proc_read_bytes=0)}, "served from memory"),
    ({"spec": {"disk_tier": False}}, "switched off"),
])
def test_a_tier_that_never_reaches_the_drive_says_why(change: dict[str, Any], words: str) -> None:
    r = storage_result()
    verdict = judge_tier(KvResult(**{**r.__dict__, **change}))
    assert not verdict.live and words in verdict.text


def test_busy_seconds_counts_overlapping_reads_once() -> None:
    assert busy_seconds([(0.0, 1.0), (0.5, 1.5), (3.0, 4.0)], 0.0, 10.0) == pytest.approx(2.5)
    assert busy_seconds([(0.0, 1.0)], 0.5, 0.75) == pytest.approx(0.25)
    assert busy_seconds([], 0.0, 1.0) == 0.0


def test_fs_type_names_memory_file_systems(tmp_path: Path) -> None:
    assert fs_type(tmp_path)
    if Path("/dev/shm").is_dir():
        assert fs_type(Path("/dev/shm")) == "tmpfs"


def test_classify_outcomes() -> None:
    assert classify(ChildExit(None, True, 5.0), None, "")[0] == "timeout"
    assert classify(ChildExit(-9, False, 1.0), None, "")[0] == "oom"
    assert classify(ChildExit(1, False, 1.0), {"outcome": "error", "error": "boom"}, "") == ("error", "boom")
    assert classify(ChildExit(1, False, 1.0), None, "MemoryError")[0] == "oom"


# ---- the child launch (test hooks run before any heavy import: any interpreter will do) -------------
@pytest.fixture
def any_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVME_AI_KV_PYTHON", sys.executable)


def test_a_crashing_child_is_an_error_with_its_log_and_leaves_no_files(tmp_path: Path, any_python: None) -> None:
    runner = make_runner(tmp_path)
    run = runner.run(specs_for(PROFILES["quick"])[1].with_(test_hook="crash"))
    assert run.result.outcome == "error" and "test hook: crash" in (run.result.error or "")
    assert "Traceback" in run.log_tail
    assert runner.recorder.extra["run_outcome"] == "error" and not runner.recorder.recorded  # type: ignore[attr-defined]
    assert not any((tmp_path / "target").rglob("*.pt")) and not any(runner.target.inside("kv_cache").iterdir())


def test_a_hung_child_times_out(tmp_path: Path, any_python: None) -> None:
    runner = make_runner(tmp_path, timeout=3)
    run = runner.run(specs_for(PROFILES["quick"])[1].with_(test_hook="sleep:60"))
    assert run.result.outcome == "timeout" and run.exit.timed_out


def test_a_killed_child_counts_as_oom(tmp_path: Path, any_python: None) -> None:
    run = make_runner(tmp_path).run(specs_for(PROFILES["quick"])[1].with_(test_hook="sigkill"))
    assert run.result.outcome == "oom"


# ---- real LMCache runs ----------------------------------------------------------------------------
needs_kv = pytest.mark.skipif(kv_missing_reason() is not None, reason=str(kv_missing_reason()))
SMALL_STORAGE = KvSpec(case="storage", shape="llama-3-8b", sequences=3, seq_tokens=256, cpu_tier_mib=70)
# system + question = one chunk, so each user's first chunk is theirs; five users overflow an 8 MiB memory tier
SMALL_SERVING = KvSpec(case="serving", users=5, rounds=2, system_tokens=192, cpu_tier_mib=8)


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    if not Path("/dev/shm").is_dir() or fs_type(Path("/dev/shm")) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm to point the dead tier at")
    d = Path(tempfile.mkdtemp(prefix="nvme-ai-kv-", dir="/dev/shm"))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@needs_kv
def test_storage_case_reaches_the_drive_with_odirect(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    run = runner.run(SMALL_STORAGE)
    assert run.ok, run.log_tail
    r, spec = run.result, SMALL_STORAGE
    if r.fs_type in ("tmpfs", "ramfs"):
        pytest.skip(f"pytest's tmp_path is on {r.fs_type}: the live-tier half of this test needs a disk")
    assert run.verdict.live, run.verdict.text
    assert r.tier.odirect_verified and r.tier.opens_direct == 2 * spec.sequences   # one write, one read per chunk
    assert all(s.bit_exact and s.disk_chunks == 1 for s in r.storage)
    assert r.tier.bytes_written == r.tier.bytes_read == spec.sequences * spec.chunk_bytes
    assert r.tier.files_left == spec.sequences
    assert set(runner.recorder.recorded) >= {"kv_store_tokens_per_s", "kv_retrieve_device_p95"}  # type: ignore[attr-defined]
    assert not any(runner.target.inside("kv_cache").iterdir()), "the chunk files were not removed"


@needs_kv
def test_a_tier_on_tmpfs_is_reported_as_never_reaching_the_drive(tmp_path: Path, shm_dir: Path) -> None:
    run = make_runner(tmp_path).run(SMALL_STORAGE, cache_root=shm_dir)
    assert run.ok, run.log_tail
    assert run.result.tier.bytes_written > 0          # LMCache did store and hit as usual ...
    assert not run.verdict.live                       # ... but nothing of it reached a drive
    assert "tmpfs (memory)" in run.verdict.text and "stayed in memory" in run.verdict.text
    assert not any(shm_dir.iterdir())


@needs_kv
def test_a_switched_off_disk_tier_is_reported(tmp_path: Path) -> None:
    run = make_runner(tmp_path).run(SMALL_STORAGE.with_(disk_tier=False))
    assert run.ok, run.log_tail
    assert not run.verdict.live and "switched off" in run.verdict.text and "wrote no chunk file" in run.verdict.text


@needs_kv
def test_serving_case_restores_prefixes_from_the_drive(tmp_path: Path) -> None:
    run = make_runner(tmp_path).run(SMALL_SERVING)
    assert run.ok, run.log_tail
    reuse = [q for q in run.result.serving if q.round == 1]
    assert len(reuse) == SMALL_SERVING.users and all(q.hit_tokens > 0 for q in reuse)
    assert all(q.token_match for q in reuse), [(q.user, q.ttft_warm) for q in reuse]
    assert run.result.tier.tokens_hit_disk > 0 and run.result.tier.odirect_verified
    assert set(run.metrics) >= {"kv_ttft_cold", "kv_ttft_warm", "kv_ttft_warm_vs_cold", "kv_hit_rate"}
    assert os.path.isfile(run.log_path)


SUITE = Path(__file__).resolve().parents[1] / "suites" / "test_kv_cache.py"


@needs_kv
def test_the_suite_fails_when_the_tier_never_reaches_the_drive(pytester: pytest.Pytester, shm_dir: Path) -> None:
    """The whole suite pointed at tmpfs: LMCache stores and hits as usual, and the test fails saying why."""
    pytester.makepyfile(test_kv_cache=SUITE.read_text())
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "storage", "--nvme-ai-target", str(shm_dir))
    r.assert_outcomes(failed=1, deselected=2)
    r.stdout.fnmatch_lines(["*the KV tier never reaches the drive*tmpfs (memory)*"])
    assert not any(shm_dir.rglob("*.pt")), "the chunk files were left on the target"
