"""procutil: a timed-out child is stopped with everything it started, setsid()'d grandchildren too."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_nvme_ai.core import procutil

# A child that ignores SIGTERM and starts a grandchild in a session of its own (as fio's jobs do),
# writes the grandchild's pid, then sleeps.
CHILD = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
open(sys.argv[1], "w").write(str(g.pid))
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie awaiting its reaper is not running


def test_timeout_stops_child_and_setsid_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        procutil.run([sys.executable, "-c", CHILD, str(pidfile)], timeout=3, grace_s=0.5)
    assert time.monotonic() - t0 < 30
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), "the setsid()'d grandchild survived the timeout"


def test_run_returns_status_and_output() -> None:
    rc, out, err = procutil.run([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"], timeout=30)
    assert (rc, out.strip()) == (3, "hi")


def test_descendants_lists_a_child_of_this_process() -> None:
    p = procutil.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert p.pid in [pid for pid, _ in procutil.descendants(os.getpid())]
    finally:
        procutil.stop(p, grace_s=0)
    assert p.poll() is not None


# A child whose grandchild (own session, as fio's job processes) inherits the output pipe; the child
# writes the grandchild's pid, then waits for a SIGKILL from outside.
ORPHANING = r"""
import subprocess, sys, time
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
open(sys.argv[1], "w").write(str(g.pid))
print("child ready", flush=True)
time.sleep(300)
"""


def test_killed_child_whose_orphan_holds_the_pipe_returns_within_seconds(tmp_path: Path) -> None:
    """kill -9 of fio: its setsid()'d job process keeps stdout open; run() must not wait for the timeout."""
    import signal
    import threading

    pidfile = tmp_path / "grandchild.pid"
    proc = procutil.start([sys.executable, "-c", ORPHANING, str(pidfile)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)

    def kill_child() -> None:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)   # someone else's kill -9

    threading.Thread(target=kill_child, daemon=True).start()
    t0 = time.monotonic()
    out, _ = procutil.finish(proc, timeout=300)
    assert time.monotonic() - t0 < 30, "waited for the orphan instead of ending"
    assert proc.returncode == -signal.SIGKILL and "child ready" in out
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), "the orphan holding the pipe was left running"


def test_pipe_holders_names_a_process_sharing_the_pipe() -> None:
    p = procutil.start([sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert p.pid in [pid for pid, _ in procutil.pipe_holders(p)]
    finally:
        procutil.stop(p, grace_s=0)
