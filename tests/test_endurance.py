"""core/endurance.py: ratings, projected life, share of rated life, bytes per unit; the settings."""
from __future__ import annotations

import math

import pytest

from pytest_nvme_ai.core.endurance import (TB, EnduranceError, bytes_per_checkpoint, bytes_per_step,
                                           bytes_per_token, endurance_use, parse_positive, parse_tb,
                                           projected_life_days, rated, rated_from_dwpd, rated_from_tbw, run_share)


def test_ratings() -> None:
    r = rated_from_tbw(600)
    assert r.bytes == 600 * TB and "600 TBW" in r.source
    d = rated_from_dwpd(1, 1_920_000_000_000, 5)            # 1 DWPD, 1.92 TB, 5 years
    assert d.tbw == pytest.approx(1.92 * 365 * 5) and "1 DWPD" in d.source and "5 years" in d.source
    assert rated(None) is None
    assert rated(600) == r
    assert rated(None, 1, 1_920_000_000_000, 5) == d
    with pytest.raises(EnduranceError, match="give one"):
        rated(600, 1)
    with pytest.raises(EnduranceError, match="capacity"):
        rated(None, 1, None, 5)
    with pytest.raises(EnduranceError, match="warranty"):
        rated(None, 1, 10**12, None)
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(EnduranceError, match="positive"):
            rated_from_tbw(bad)


def test_life_and_share() -> None:
    r = rated_from_tbw(864)                     # 864 TB at 10 MB/s: 864e12 / 864e9 per day = 1000 days
    assert projected_life_days(r, 10_000_000) == pytest.approx(1000)
    assert projected_life_days(r, 0) == math.inf
    assert run_share(r, 864 * 10**9) == pytest.approx(0.001)
    use = endurance_use(r, 1_000_000_000, 100.0)
    assert use.write_rate == pytest.approx(10_000_000) and use.life_days == pytest.approx(1000)
    assert use.run_share == pytest.approx(1e9 / 864e12)
    with pytest.raises(EnduranceError, match="duration"):
        endurance_use(r, 1, 0)
    with pytest.raises(EnduranceError, match="zero or more"):
        projected_life_days(r, -1)


def test_bytes_per_unit() -> None:
    assert bytes_per_step(1_080_000_000 * 3, 3) == pytest.approx(1.08e9)
    assert bytes_per_checkpoint(500, 2) == 250
    assert bytes_per_token(8192 * 2048, 2048) == 8192
    with pytest.raises(EnduranceError, match="at least one cached token"):
        bytes_per_token(1, 0)


def test_parsers() -> None:
    assert parse_tb("600") == 600 and parse_tb(" 1.5 TB ") == 1.5 and parse_tb("7tb") == 7
    with pytest.raises(EnduranceError, match="not a number of terabytes"):
        parse_tb("lots")
    with pytest.raises(EnduranceError, match="positive"):
        parse_tb("-3")
    assert parse_positive("5") == 5
    with pytest.raises(EnduranceError, match="not a number"):
        parse_positive("five")


def test_settings_declared_once_with_option_ini_env() -> None:
    from pytest_nvme_ai.run import settings

    s = settings.BY_NAME["rated_tbw"]
    assert (s.option, s.ini, s.envvar, s.default) == ("--nvme-ai-rated-tbw", "nvme_ai_rated_tbw",
                                                      "NVME_AI_RATED_TBW", None)
    assert s.parse("600") == 600
    assert settings.BY_NAME["rated_dwpd"].default is None and settings.BY_NAME["warranty_years"].default == 5.0


def test_bad_rated_tbw_is_a_usage_error_naming_its_source(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    pytester.makeconftest(
        "from pytest_nvme_ai.run.settings import resolve\n"
        "def pytest_configure(config):\n"
        "    resolve(config, 'rated_tbw')\n")
    res = pytester.runpytest("--nvme-ai-rated-tbw", "-5", "-p", "no:cacheprovider")
    res.stderr.fnmatch_lines(["*bad value '-5' for rated_tbw from command line --nvme-ai-rated-tbw*positive*"])
