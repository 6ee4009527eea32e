"""JSON lines from a persistent child's stdout, each awaited until a deadline.

The aio worker and the inference workers answer requests on a pipe, one JSON object per line; a
reply that does not come in time, or a pipe that closes, is how the parent learns that the child
hung or died. Callers turn those two exceptions into their own errors (with the child's log tail).
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from typing import IO, Any, Mapping


class ChildSilent(TimeoutError):
    """No complete line arrived before the deadline."""


class ChildClosed(EOFError):
    """The child closed its stdout (it exited or died) before a complete line."""


class LineReader:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._buf = b""

    def next(self, deadline: float, poll_s: float = 5.0) -> dict[str, Any]:
        """The next line as a JSON object; ChildSilent at `deadline` (time.monotonic), ChildClosed at EOF."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._stream, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChildSilent("no reply before the deadline")
                if not sel.select(timeout=min(left, poll_s)):
                    continue
                chunk = os.read(self._stream.fileno(), 65536)
                if not chunk:
                    raise ChildClosed("the child closed its output")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return dict(json.loads(line))


def write_line(stream: IO[bytes] | None, obj: Mapping[str, Any]) -> bool:
    """Send one request as a JSON line to a child's stdin; False when the pipe is gone (the child died)."""
    if stream is None:
        return False
    try:
        stream.write((json.dumps(obj, default=str) + "\n").encode())
        stream.flush()
    except (BrokenPipeError, OSError):
        return False
    return True


def end_input(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Close the child's stdin (the workers' cue to exit) and wait for it; False when it did not exit in time."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return True
