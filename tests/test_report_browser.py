"""Open the rendered pages in headless Chromium: no console error, no network request, a screenshot.

The DevTools protocol is spoken over `--remote-debugging-pipe` (fd 3 in, fd 4
out, NUL-separated JSON): pure stdlib, no websocket client, no port to race
for, and nothing listening on the network while the page is open.

Screenshots land in pytest's tmp dir and are copied to reports/screenshots/
(git-ignored) so a human or a CI job can look at them; the paths are printed.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_nvme_ai.report import render_compare, render_run

GOLDEN = Path(__file__).parent / "golden" / "results_full.json"
SCREENSHOT_DIR = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio",
         "--hide-scrollbars", "--remote-debugging-pipe")
WIDTH = 1280


def find_chromium() -> str | None:
    env = os.environ.get("NVME_AI_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed: run scripts/install_chromium.sh (apt-get install chromium) "
                             "or set NVME_AI_CHROMIUM to a Chromium/Chrome binary")


class CdpError(RuntimeError):
    pass


class Browser:
    """Chromium with a DevTools pipe. Commands block until their reply; events are kept in order."""

    def __init__(self, exe: str, profile_dir: Path, log: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # Move the child's ends above fd 10 so the shell's "3<&N 4>&M" cannot clobber one with the other.
        a = _dup_high(to_chrome_r)
        b = _dup_high(from_chrome_w)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        argv = [exe, *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={WIDTH},900", "about:blank"]
        self.log_path = log
        self._log = open(log, "wb")
        # bash, not sh: dash cannot redirect file descriptors above 9.
        self.proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{a} 4>&{b} {a}<&- {b}>&-', *argv],
            pass_fds=(a, b), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,   # its own process group: a hung browser is killed with its renderers
        )
        os.close(a)
        os.close(b)
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._inbox.put(json.loads(m))

    def _pump(self, deadline: float) -> None:
        msg = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        if msg is None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise CdpError(f"chromium closed the DevTools pipe (exit code {self.proc.poll()}); its output:\n{tail}")
        if "id" in msg:
            self._replies[msg["id"]] = msg
        else:
            self.events.append(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while mid not in self._replies:
            try:
                self._pump(deadline)
            except queue.Empty:
                raise CdpError(f"{method}: no reply within {timeout:g}s") from None
        reply = self._replies.pop(mid)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if e.get("method") == method and e.get("sessionId") == session:
                    return e
            seen = len(self.events)
            try:
                self._pump(deadline)
            except queue.Empty:
                raise CdpError(f"no {method} within {timeout:g}s") from None

    def settle(self, seconds: float) -> None:
        """Collect late events (a request fired by layout, a console message after load)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._pump(deadline)
            except queue.Empty:
                return

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Only the browser this test started: its own process group, by id.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, 10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    assert CHROMIUM is not None
    b = Browser(CHROMIUM, tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        yield b
    finally:
        b.close()


def open_page(b: Browser, page: Path) -> tuple[str, str]:
    """Open `page` in a fresh tab with Network/Runtime/Log watched; returns (session id, url)."""
    target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Network", "Runtime", "Log", "Page"):
        b.send(f"{domain}.enable", session=session)
    b.send("Emulation.setDeviceMetricsOverride",
           {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    url = page.resolve().as_uri()
    b.events.clear()
    b.send("Page.navigate", {"url": url}, session=session)
    b.wait_event("Page.loadEventFired", session)
    b.settle(1.0)
    return session, url


def problems(b: Browser, session: str, url: str) -> tuple[list[str], list[str]]:
    """(network requests other than the page itself, console errors) seen in this tab."""
    requests, errors = [], []
    for e in b.events:
        if e.get("sessionId") != session:
            continue
        method, p = e.get("method"), e.get("params", {})
        if method == "Network.requestWillBeSent" and p.get("request", {}).get("url") != url:
            requests.append(p["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(p.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(f"{p['entry'].get('source')}: {p['entry'].get('text')}")
    return requests, errors


def screenshot(b: Browser, session: str, dest: Path, *, max_height: int | None = None) -> Path:
    import base64

    height = int(b.send("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"])
    if max_height:
        height = min(height, max_height)
    shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                             "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}},
                  session=session, timeout=60)
    dest.write_bytes(base64.b64decode(shot["data"]))
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOT_DIR / dest.name
    shutil.copyfile(dest, kept)
    return kept


def evaluate(b: Browser, session: str, expr: str) -> Any:
    reply = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
    return reply["result"].get("value")


def test_detector_catches_requests_and_console_errors(browser: Browser, tmp_path: Path) -> None:
    """The harness itself: a page that fetches and logs an error must be caught (else a pass means nothing)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><title>bad</title><img src="http://127.0.0.1:9/x.png">'
                   '<script>console.error("boom")</script>', encoding="utf-8")
    session, url = open_page(browser, bad)
    requests, errors = problems(browser, session, url)
    assert any("127.0.0.1:9" in r for r in requests), browser.events
    assert any("boom" in e for e in errors), errors


def after_firmware_update(data: dict[str, Any]) -> dict[str, Any]:
    """The golden run again on new firmware: large-block reads 20% slower, inference 10% slower."""
    new = json.loads(json.dumps(data).replace('"firmware": "4B2QJXD7"', '"firmware": "5B2QJXD7"'))
    new["run"]["id"] = "20261127-090000-d4e5f6"
    for t in new["tests"]:
        factor = {"seq_read": 0.8, "aio_read": 0.9, "zero_inference": 0.9}.get(t["suite"], 1.0)
        for name in ("bw", "total_throughput"):
            m = t["metrics"].get(name)
            if m:
                m["value"] *= factor
                m["samples"] = [x * factor for x in m["samples"]]
    return new


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", ["run", "compare"])
def test_page_opens_clean_in_chromium(browser: Browser, tmp_path: Path, golden: dict[str, Any], kind: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / f"{kind}.html"
    if kind == "run":
        render_run(golden, page, run_dir=tmp_path)
    else:
        render_compare(golden, after_firmware_update(golden), page, labels=("fw 4B2QJXD7", "fw 5B2QJXD7"))
    session, url = open_page(browser, page)
    requests, errors = problems(browser, session, url)
    assert requests == [], f"the page made network requests: {requests}"
    assert errors == [], f"console errors: {errors}"
    # The page really rendered (not an error page): headings and inline charts are there.
    assert "pytest-nvme-ai" in evaluate(browser, session, "document.title")
    assert evaluate(browser, session, "document.querySelectorAll('figure.chart svg').length") >= 2
    assert evaluate(browser, session, "document.querySelectorAll('img').length") == 0   # hostile <img> stayed text
    top = screenshot(browser, session, tmp_path / f"report-{kind}-top.png", max_height=2200)
    full = screenshot(browser, session, tmp_path / f"report-{kind}-full.png", max_height=24000)
    with capsys.disabled():
        sys.stdout.write(f"\n[{kind} page] screenshots: {top} (top), {full} (full page); "
                         f"tmp copies in {tmp_path}\n")
    assert top.stat().st_size > 10_000
