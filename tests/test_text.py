"""core.text: the one size parser/formatter, slug, median and log tail every stage uses."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.text import (device_slug, file_tail, format_size, median, parse_size, safe_name,
                                      size_or_none, tail)

FP = {"kind": "nvme", "model": "Micron 7450", "firmware": "E2MU200", "pcie_gen": 4, "pcie_width": 4, "fs_type": "ext4"}


# The two parsers this replaces disagreed: the report's took "1.5M" (as 1572864), 0 and junk-with-a-number,
# fio's raised. One rule now: whole units, larger than zero; display code gets None where a job gets an error.
@pytest.mark.parametrize("text", ["1.5M", "0", 0, "-1M", "junk", "", "1X", True])
def test_parser_and_display_agree_on_what_is_not_a_size(text: Any) -> None:
    with pytest.raises(ValueError, match="size|larger than zero"):
        parse_size(text)
    assert size_or_none(text) is None


@pytest.mark.parametrize("text,n", [("4k", 4096), ("4K", 4096), ("4KiB", 4096), ("1M", 1 << 20), ("16MB", 16 << 20),
                                    (" 2G ", 2 << 30), ("1t", 1 << 40), (512, 512), ("512", 512)])
def test_sizes_parse_the_same_everywhere(text: str | int, n: int) -> None:
    assert parse_size(text) == n == size_or_none(text)


def test_size_or_none_takes_whole_floats_from_json() -> None:
    assert size_or_none(1048576.0) == 1 << 20
    assert size_or_none(1.5) is None and size_or_none(None) is None and size_or_none([1]) is None


def test_format_size_is_exact_and_round_trips() -> None:
    assert [format_size(n) for n in (4096, 1 << 20, 3 << 30, 2 << 40, 1536, 1000)] == [
        "4K", "1M", "3G", "2T", "1536", "1000"]
    assert format_size(0) == "0"
    for n in (4096, 1536, 1 << 20, 7 << 30):
        assert parse_size(format_size(n)) == n


def test_device_slug_is_filesystem_safe_and_names_the_drive() -> None:
    assert device_slug(FP) == "nvme-micron_7450-e2mu200-gen4x4-ext4"
    assert device_slug({"kind": "virtio", "model": None, "fs_type": "ext4"}) == "virtio-ext4"
    assert device_slug({}) == "unknown-device"
    assert "/" not in device_slug({"kind": "nvme", "model": "A/B C:D"})


def test_safe_name() -> None:
    assert safe_name("suites/test_x.py::test_y[bs1M-@default]") == "suites_test_x.py_test_y_bs1M-@default"
    assert safe_name("///") == "test" and len(safe_name("a" * 500)) == 120 and safe_name("x y", 1) == "x"
    # id labels keep fewer characters: '-' separates the parts of a pytest id
    assert safe_name("nvme-0@a=b", None, default="root", keep="_.") == "nvme_0_a_b" and safe_name("", None, default="") == ""


def test_median() -> None:
    assert median([3, 1, 2]) == 2.0 and median([1, 2, 3, 4]) == 2.5 and median([]) is None
    assert median(x for x in (5.0,)) == 5.0


def test_tail(tmp_path: Path) -> None:
    text = "\n".join(f"line {i}" for i in range(100)) + "\n\n"
    assert tail(text, 2) == "line 98\nline 99"
    assert tail(text, 2, chars=5) == "…ne 99"
    assert tail(None) == "" and tail("") == ""
    log = tmp_path / "log"
    log.write_bytes(b"a\nb\xff\nc\n")
    assert file_tail(log, 2) == "b\ufffd\nc"
    assert file_tail(tmp_path / "missing") == ""
