"""The gate on real measurements: fio capped with rate= emulates a drive half as fast as its baseline."""
from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio not found: apt-get install fio")

TEST_FILE = """
import os
from pytest_nvme_ai.measure.fio.runner import FioJob

def test_capped_read(fio, nvme_ai):
    rate = os.environ["CAP_RATE"]
    res = fio.run(FioJob(name="capped", bs="1M", iodepth=4, size="64M", runtime=1, time_based=True, rate=rate))
    # The cap stands in for a slower drive, not for another job: a changed rate in the params would
    # (rightly, for users) make the baseline 'incomparable' instead of gating it.
    nvme_ai.set_params(rate="emulated drive")
    assert res.io_bytes > 0
"""


def test_real_fio_slowdown_fails_exactly_the_measuring_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_capped=TEST_FILE)
    # The cap sits far below what this disk sustains, so the measured bandwidth is the cap, steadily.
    pytester._monkeypatch.setenv("CAP_RATE", "64M")
    saved = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-save-baseline")
    saved.assert_outcomes(passed=1)
    # A quarter of the rate: far beyond the short window's assumed drift (48%) even when a busy machine
    # delivers the first cap only in part (64M has read as 31-67 MB/s under load).
    pytester._monkeypatch.setenv("CAP_RATE", "16M")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*bw REGRESSION: baseline * MB/s, now * MB/s, delta -*% (worse; higher is better)*"])
    data = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())
    (test,) = data["tests"]
    assert test["verdict"] == "regression"
    bw = test["baseline"]["metrics"]["bw"]
    assert bw["delta"] < -0.5
    assert bw["method"] == "mann-whitney-u" and bw["n_now"] == 3
    # the fio job file that a person can rerun by hand is kept with the run
    assert any(label.startswith("fio job") for label in test["artifacts"])
