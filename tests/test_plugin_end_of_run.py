"""The end of the run (run/finish.end_run) through pytest: the page is rendered once per run, with the history's
trends in it, and results.json is written, never read back by the process that wrote it; the command line is
recorded with its secrets masked (results.json, the page, the session's lock file)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

# Counts every render_run call and every open of a results.json for reading in the pytest process, through an
# audit hook (it sees open(), Path.read_text() and os.open() alike), and writes them out at unconfigure.
CONFTEST = """
import json, os, sys

import pytest_nvme_ai.report as report

SEEN = {"renders": 0, "results_reads": []}
_render = report.render_run


def _counting_render(*args, **kwargs):
    SEEN["renders"] += 1
    return _render(*args, **kwargs)


report.render_run = _counting_render


def _reads_results(path, mode, flags):
    if not isinstance(path, (str, bytes, os.PathLike)) or not os.fsdecode(os.fspath(path)).endswith("results.json"):
        return False
    if isinstance(mode, str):
        return not any(c in mode for c in "wax")
    return isinstance(flags, int) and flags & os.O_ACCMODE == os.O_RDONLY


def _audit(event, args):
    if event == "open" and _reads_results(*args[:3]):
        SEEN["results_reads"].append(os.fsdecode(os.fspath(args[0])))


sys.addaudithook(_audit)


def pytest_unconfigure(config):
    with open(os.environ["SEEN_FILE"], "w") as fh:
        json.dump(SEEN, fh)
"""

TEST_FILE = """
import json

def test_measured(nvme_ai, offload_target):
    nvme_ai.record_samples("bw", [100e6, 101e6, 99e6])
    lock = json.loads((offload_target.workdir / ".session.lock").read_text())
    assert "hunter2" not in json.dumps(lock), lock   # the lock file other sessions read
    assert all("runner:***@" in a for a in lock["argv"] if a.startswith("--junit-prefix")), lock
"""

SECRET_ARG = "--junit-prefix=postgresql://runner:hunter2@db.lab/nvme_ai"   # any option that keeps a string


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_demo=TEST_FILE)
    return pytester


def run(p: pytest.Pytester, seen: Path, *args: str) -> tuple[pytest.RunResult, dict[str, object]]:
    p._monkeypatch.setenv("SEEN_FILE", str(seen))
    r = p.runpytest_subprocess("-p", "no:cacheprovider", *args)
    return r, json.loads(seen.read_text())


def test_one_render_per_run_with_trends_and_results_json_never_read_back(demo: pytest.Pytester) -> None:
    r1, seen1 = run(demo, demo.path / "seen1.json")
    r1.assert_outcomes(passed=1)
    assert seen1 == {"renders": 1, "results_reads": []}
    r2, seen2 = run(demo, demo.path / "seen2.json")
    r2.assert_outcomes(passed=1)
    r2.stdout.fnmatch_lines(["nvme-ai history: run * appended to *; report trends: 1 series"])
    assert seen2 == {"renders": 1, "results_reads": []}   # the trends went into the one render
    assert 'id="trends"' in (demo.path / "reports" / "latest" / "index.html").read_text()


def test_a_failing_history_write_still_renders_once(demo: pytest.Pytester) -> None:
    demo.makepyfile(test_demo=TEST_FILE + """
import os, sqlite3

def test_breaks_the_store(nvme_ai):
    nvme_ai.record_samples("iops", [10, 11, 9])
    c = sqlite3.connect(os.environ["BREAK_HISTORY"])
    c.execute("DROP TABLE nvme_ai_metrics")
    c.commit()
    c.close()
""")
    db = demo.path / "h.sqlite"
    demo._monkeypatch.setenv("BREAK_HISTORY", str(db))
    r, seen = run(demo, demo.path / "seen.json", "--nvme-ai-history", str(db))
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["nvme-ai history NOT written to sqlite:///*h.sqlite: OperationalError*"])
    assert seen == {"renders": 1, "results_reads": []}
    assert (demo.path / "reports" / "latest" / "index.html").is_file()


def test_the_command_line_is_recorded_with_its_secrets_masked(demo: pytest.Pytester) -> None:
    r, _ = run(demo, demo.path / "seen.json", SECRET_ARG)
    r.assert_outcomes(passed=1)
    run_dir = demo.path / "reports" / "latest"
    argv = json.loads((run_dir / "results.json").read_text())["run"]["argv"]
    assert "--junit-prefix=postgresql://runner:***@db.lab/nvme_ai" in argv
    page = (run_dir / "index.html").read_text()
    assert "hunter2" not in page and "runner:***@db.lab" in page
    assert "hunter2" not in r.stdout.str()


def test_the_report_masks_the_command_line_of_an_older_results_json() -> None:
    from pytest_nvme_ai.report.render import run_info

    rows = dict(run_info({"run": {"id": "r1", "argv": ["suites/", "--nvme-ai-history",
                                                        "postgresql://runner:hunter2@db.lab/nvme_ai"]}}))
    assert rows["Command"] == "suites/ --nvme-ai-history postgresql://runner:***@db.lab/nvme_ai"
