"""measure/deepspeed/devcount.py and devtier.py: a child's own device counter, and the tier check that
flags (and fails) a dead tier for the DeepSpeed workloads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.extras import DevTruthExtra
from pytest_nvme_ai.measure.deepspeed.devcount import DeviceCounter, own_cgroup
from pytest_nvme_ai.measure.deepspeed.devtier import (TierCheck, fail_on_dead_tier, tier_check, tier_failure,
                                                      tier_on_device)
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement, device_samples

MIB = 1 << 20
INFO = {"device": "259:0", "isolated": True, "how": "test counter", "writeback_counted": False}


class NoteRecorder:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}

    def note(self, text: str) -> None:
        self.notes.append(text)

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value


def test_own_cgroup_v1_first_then_v2(tmp_path: Path) -> None:
    v1 = "12:blkio:/user.slice/nvme-ai-7-ab\n0::/x"
    assert own_cgroup(v1, tmp_path) == (1, tmp_path / "blkio/user.slice/nvme-ai-7-ab")
    assert own_cgroup("0::/a/b", tmp_path) == (2, tmp_path / "a/b")
    assert own_cgroup("", tmp_path) is None


def test_counter_refuses_a_cgroup_that_is_not_ours(tmp_path: Path) -> None:
    counter, why = DeviceCounter.open(tmp_path, proc_cgroup="12:blkio:/user.slice", root=tmp_path)
    if counter is None and why and "no block device" in why:
        pytest.skip(why)
    assert counter is None and why is not None and "not an accounting cgroup of its own" in why


def test_counter_reads_its_own_cgroups_file(tmp_path: Path) -> None:
    from pytest_nvme_ai.measure.io_cgroup import IoCgroupError, disk_of

    try:
        disk = disk_of(tmp_path)
    except IoCgroupError as exc:
        pytest.skip(str(exc))
    cg = tmp_path / "blkio" / "nvme-ai-1-abcd"
    cg.mkdir(parents=True)
    (cg / "blkio.throttle.io_service_bytes_recursive").write_text(f"{disk.dev} Read 4096\n{disk.dev} Write 512\n")
    counter, why = DeviceCounter.open(tmp_path, proc_cgroup="3:blkio:/nvme-ai-1-abcd", root=tmp_path)
    assert why is None and counter is not None
    assert counter.read() == (4096, 512)
    assert counter.describe()["device"] == disk.dev and counter.describe()["isolated"]


def test_swap_folder_on_tmpfs_is_a_dead_tier_before_any_run() -> None:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    flag = tier_on_device("ZeRO-Inference offload_param nvme under /dev/shm/x", "/dev/shm")
    assert flag is not None and flag.fails and "/dev/shm/x" in flag.message


def test_tier_check_flags_dead_leak_and_nothing() -> None:
    dead = tier_check("swap at /t", INFO, [0, 0], [0, 0], 64 * MIB)
    assert [f.kind for f in dead.flags] == ["dead_tier", "page_cache_leak"]
    assert tier_failure(dead) is not None and "swap at /t" in (tier_failure(dead) or "")
    leak = tier_check("swap at /t", INFO, [16 * MIB, 16 * MIB], [0, 0], 64 * MIB)
    assert [f.kind for f in leak.flags] == ["page_cache_leak"] and tier_failure(leak) is None
    ok = tier_check("swap at /t", INFO, [32 * MIB, 31 * MIB], [0, 0], 64 * MIB)
    assert ok.flags == () and ok.device is not None and ok.device.read_bytes == 63 * MIB


def test_dead_tier_judged_on_the_tiers_own_bytes_when_the_app_count_is_blind() -> None:
    """A tier served from memory leaves /proc/self/io at zero too: judged on what the offload moved."""
    blind = tier_check("swap at /t", INFO, [0], [0], 0)
    assert blind.flags == ()  # nothing to judge against
    judged = tier_check("swap at /t", INFO, [0], [0], 0, tier_bytes=64 * MIB)
    assert [f.kind for f in judged.flags] == ["dead_tier"] and tier_failure(judged) is not None
    working = tier_check("swap at /t", INFO, [48 * MIB], [0], 48 * MIB, tier_bytes=64 * MIB)
    assert working.flags == ()  # 75% of the swap request reached the disk: DeepSpeed kept some parameters


def test_tier_check_without_counter_says_why_and_judges_nothing() -> None:
    check = tier_check("swap at /t", {"reason": "the child is in cgroup /, not ours"}, [None], [None], 64 * MIB)
    assert check.device is None and check.flags == () and "not ours" in (check.reason or "")
    shm = tier_check("swap at /dev/shm", {"reason": "/dev/shm is on a filesystem with no block device (tmpfs)"},
                     [None], [None], 64 * MIB)
    assert tier_failure(shm) is not None


def test_fail_on_dead_tier_records_then_fails() -> None:
    rec = NoteRecorder()
    check = tier_check("ZeRO-Inference offload_param nvme at /t/swap", INFO, [0], [0], 64 * MIB)
    with pytest.raises(pytest.fail.Exception, match="dead tier: ZeRO-Inference offload_param nvme at /t/swap"):
        fail_on_dead_tier(rec, check, "nvme")  # type: ignore[arg-type]
    assert rec.extra[DevTruthExtra.key("nvme")]["flags"][0]["kind"] == "dead_tier"
    assert any("dead tier" in n for n in rec.notes)
    fine = NoteRecorder()
    fail_on_dead_tier(fine, TierCheck("x", None, None, None, reason="no counter"))  # type: ignore[arg-type]
    assert fine.extra["devtruth"]["reason"] == "no counter"


def loop(read: int, dev: int | None) -> LoopMeasurement:
    return LoopMeasurement(1.0, 0.1, 3, read, 0, 0, None, 2, device_read_bytes=dev, device_write_bytes=0)


def test_device_samples_only_when_every_loop_has_them() -> None:
    got = device_samples([loop(100, 95), loop(100, 100)])
    assert got["device_read_bytes"] == [95.0, 100.0] and got["device_read_ratio"] == [0.95, 1.0]
    assert device_samples([loop(100, 95), loop(100, None)]) == {}


CHILD = """
import json, sys
from pytest_nvme_ai.measure.deepspeed.devcount import DeviceCounter
counter, why = DeviceCounter.open(sys.argv[1])
r0 = counter.read() if counter else None
with open(sys.argv[2], 'rb') as fh:
    while fh.read(1 << 20):
        pass
r1 = counter.read() if counter else None
print(json.dumps({"why": why, "read": r1[0] - r0[0] if counter else None}))
"""


@pytest.mark.parametrize("cached", [False, True], ids=["from-disk", "page-cache"])
def test_a_joined_child_counts_its_own_reads(tmp_path: Path, cached: bool) -> None:
    """The real thing: a child in an accounting cgroup reads a file; uncached, the device read it all;
    cached (a tier served from memory), nothing reached the device and the check calls the tier dead."""
    from pytest_nvme_ai.measure.io_cgroup import IoCgroup, IoCgroupError, account, cgroup_missing_reason, disk_of

    if (reason := cgroup_missing_reason()) is not None:
        pytest.skip(f"no accounting cgroup here: {reason}")
    try:
        disk_of(tmp_path)
    except IoCgroupError as exc:
        pytest.skip(str(exc))
    data = tmp_path / "param.swp"
    data.write_bytes(os.urandom(16 * MIB))
    fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(fd)
        if cached:
            os.read(fd, 16 * MIB)
        else:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    with account(tmp_path) as acct:
        assert isinstance(acct, IoCgroup)
        out = subprocess.run(acct.wrap([sys.executable, "-c", CHILD, str(tmp_path), str(data)]), check=True,
                             capture_output=True, text=True, env={**os.environ}).stdout
    got = json.loads(out)
    assert got["why"] is None
    check = tier_check(f"swap at {tmp_path}", INFO, [got["read"]], [0], 16 * MIB)
    if cached:
        assert got["read"] < MIB and tier_failure(check) is not None
    else:
        assert got["read"] >= 0.9 * 16 * MIB and check.flags == ()


def test_runner_fails_an_nvme_case_whose_target_is_a_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's check before any run: a swap folder on /dev/shm can never reach a drive."""
    import shutil
    import tempfile

    from pytest_nvme_ai.core.recorder import MemoryRecorder
    from pytest_nvme_ai.core.targets import Target
    from pytest_nvme_ai.measure.zero_inference.runner import ZeroInferenceRunner
    from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec

    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    shm = Path(tempfile.mkdtemp(prefix="devtier-", dir="/dev/shm"))
    try:
        target = Target(path=shm, label="shm", run_id="devtier")
        target.workdir.mkdir(parents=True, exist_ok=True)
        rec = MemoryRecorder(tmp_path, nodeid="tests/test_devtier.py::tmpfs")
        runner = ZeroInferenceRunner(target, rec)
        monkeypatch.setattr(runner, "prepare", lambda: None)          # no ops build: the check comes first
        monkeypatch.setattr(runner, "space_shortfall", lambda spec: None)
        spec = InferenceSpec(model="opt-tiny", batch_size=1, prompt_len=8, gen_len=2, offload="nvme", loops=1, warmup=0)
        with pytest.raises(pytest.fail.Exception, match="dead tier: .*no block device"):
            runner.run(spec)
        assert rec.extra["devtruth"]["flags"][0]["kind"] == "dead_tier"
    finally:
        shutil.rmtree(shm, ignore_errors=True)


CGROUP_STAND_IN = """
import json, os, sys
print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
for line in sys.stdin:
    text = open("/proc/self/cgroup").read()
    print(json.dumps({"event": "result", "outcome": "ok", "cgroup": text}), flush=True)
"""


def test_a_pool_worker_joins_a_cgroup_of_its_own_that_goes_with_it(tmp_path: Path) -> None:
    """One accounting cgroup per worker: joined after "ready", before the first case; removed at close."""
    from pytest_nvme_ai.measure.io_cgroup import CGROUP_ROOT, IoCgroupError, cgroup_missing_reason, disk_of
    from pytest_nvme_ai.measure.zero_inference.pool import EnginePool

    if (reason := cgroup_missing_reason()) is not None:
        pytest.skip(f"no accounting cgroup here: {reason}")
    try:
        disk_of(tmp_path)
    except IoCgroupError as exc:
        pytest.skip(str(exc))
    script = tmp_path / "worker.py"
    script.write_text(CGROUP_STAND_IN)
    swap = tmp_path / "engine-a"
    swap.mkdir()
    pool = EnginePool(max_alive=1, argv=[sys.executable, str(script)])
    try:
        msg = pool.run("A", {}, timeout=30, swap_dir=swap, estimate=0)
        own = own_cgroup(msg["cgroup"], CGROUP_ROOT)
        assert own is not None and own[1].name.startswith("nvme-ai-"), msg["cgroup"]
        assert own[1].is_dir()
    finally:
        pool.close_all()
    assert not own[1].exists()  # removed with the worker
