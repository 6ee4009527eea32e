"""Issue 22, sweep 3: a `kill -9` during a capped drive-speed run leaves its throttle cgroup; the next
session names it at start and removes it (measure/throttle.py `clear_leftovers`). Real cgroups: root and
a blkio (or v2 io) controller, else skipped with the reason."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_nvme_ai.measure.throttle import clear_leftovers, throttle_missing_reason

CAPPED_RUN = """
import subprocess, sys, time
from pytest_nvme_ai.measure.throttle import Throttle, block_device_of
with Throttle(block_device_of(sys.argv[1]), 50e6) as t:
    child = subprocess.Popen(t.wrap(["sleep", "120"]), start_new_session=True)  # outlives a kill -9 of us
    while str(child.pid) not in t.procs.read_text().split():
        time.sleep(0.05)
    print(t.path, child.pid, flush=True)
    time.sleep(120)
"""


def test_a_killed_capped_runs_cgroup_is_named_and_removed_at_the_next_start(tmp_path: Path) -> None:
    if (why := throttle_missing_reason(tmp_path)) is not None:
        pytest.skip(why)
    run = subprocess.Popen([sys.executable, "-c", CAPPED_RUN, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert run.stdout is not None
    path, child = run.stdout.readline().split()
    left, child_pid = Path(path), int(child)
    os.kill(run.pid, signal.SIGKILL)          # no __exit__, no atexit: the cgroup stays
    assert run.wait(10) == -signal.SIGKILL
    assert left.is_dir() and left.name.startswith(f"nvme-ai-{run.pid}-")
    ours = left.parent / f"nvme-ai-{os.getpid()}-{secrets.token_hex(4)}"   # a live owner's: in use
    ours.mkdir()
    try:
        lines = clear_leftovers()
        mine = [ln for ln in lines if str(left) in ln]
        assert mine == [f"leftover cgroup {left} of a run that died (pid {run.pid} is gone; a capped drive-speed "
                        "run's read cap or a block-accounting cgroup): removed, after moving the 1 process(es) "
                        f"still in it ({child_pid}) out"], lines
        assert not left.exists()
        assert ours.is_dir() and not any(str(ours) in ln for ln in lines)
        assert not [ln for ln in clear_leftovers() if str(left) in ln]     # named once: gone now
    finally:
        ours.rmdir()
        os.kill(child_pid, signal.SIGKILL)    # the dead run's sleep, which this test started through it
