"""Extension points by file: catalog, report sections and settings each pick up a new module by itself."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from pytest_nvme_ai.core.catalog import CATALOG, OWNER
from pytest_nvme_ai.core.registry import submodules
from pytest_nvme_ai.report.sections import BUILDERS, SUITE_TITLES
from pytest_nvme_ai.run import settings


@pytest.fixture
def fake_package(tmp_path: Path) -> Iterator[Path]:
    """An importable package `extpkg` on sys.path, removed (with its modules) afterwards."""
    pkg = tmp_path / "extpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield pkg
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "extpkg" or m.startswith("extpkg.")]:
            del sys.modules[name]


def test_submodules_finds_new_files_in_their_order(fake_package: Path) -> None:
    for name, body in {"zeta": "ORDER = 5\nTHING = 'z'\n", "alpha": "THING = 'a'\n", "beta": "ORDER = 5\nTHING = 'b'\n",
                       "helper": "X = 1\n", "_private": "THING = 'p'\n"}.items():
        (fake_package / f"{name}.py").write_text(textwrap.dedent(body))
    found = [m.THING for m in submodules("extpkg", "THING")]
    assert found == ["b", "z", "a"]   # ORDER first, then name; no THING or a leading '_' -> not picked up


def test_catalog_is_collected_per_concern_in_the_report_order() -> None:
    assert list(CATALOG)[:5] == ["bw", "iops", "clat_p50", "clat_p99", "clat_p999"]
    assert OWNER["bw"] == "fio" and OWNER["aio_vs_fio"] == "aio" and OWNER["total_throughput"] == "zero_inference"
    assert set(OWNER) == set(CATALOG)


def test_every_suite_section_is_registered_once() -> None:
    suites = [b.suite for b in BUILDERS]
    assert suites[:3] == ["seq_read", "aio_read", "zero_inference"] and len(set(suites)) == len(suites)
    assert SUITE_TITLES["seq_read"] == "fio sequential read"


def test_settings_are_collected_from_their_concerns() -> None:
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))
    assert {"target", "profile", "tolerance", "baseline_dir", "aio", "timeout"} <= set(names)
    assert settings.BY_NAME["tolerance"].option == "--nvme-ai-tolerance"
    assert settings.BY_NAME["tolerance"].envvar == "NVME_AI_TOLERANCE"
