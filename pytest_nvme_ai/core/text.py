"""Text helpers every stage shares: sizes, slugs, medians, log tails.

One of each, so that a size written in a job file, shown in the report and parsed from the
command line means the same bytes everywhere, and a device's baseline name is spelled one way.
"""
from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping

# fio's default kb_base is 1024, so "1M" means 2**20 bytes, as a reader of a job file expects.
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


# ---- sizes ----------------------------------------------------------------------------------------
def parse_size(value: str | int, what: str = "size") -> int:
    """'1M' -> 1048576, '4KiB' -> 4096; ints pass through. Errors name the option.

    Whole numbers of a unit only, and larger than zero: fio itself takes '1.5M' as something other than
    1.5 MiB on some options, and a zero-byte block or file is always a mistake, so both are refused here
    with a message instead of becoming a surprising job.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what}={value!r} is not a size; use bytes or a string like '1M'")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise ValueError(f"{what}={value!r} is not a size; use bytes or a string like '128K', '1M', '16M', '2G'")
        n = int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]
    if n <= 0:
        raise ValueError(f"{what}={value!r} must be larger than zero")
    return n


def size_or_none(value: Any) -> int | None:
    """`parse_size` for display code reading any results.json: None for what is not a size."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (str, int)):
        return None
    try:
        return parse_size(value)
    except ValueError:
        return None


def format_size(n: int) -> str:
    """Shortest exact fio size string: 2097152 -> '2M', 4096 -> '4K', 1536 -> '1536'."""
    if n > 0:
        for suffix in ("T", "G", "M", "K"):
            unit = SIZE_UNITS[suffix.lower()]
            if n % unit == 0:
                return f"{n // unit}{suffix}"
    return str(n)


# ---- names ----------------------------------------------------------------------------------------
ID_CHARS = "_.@=-"   # what a test id keeps in artifact and offload directory names


def safe_name(text: str, limit: int | None = 120, *, default: str = "test", keep: str = ID_CHARS) -> str:
    """`text` with every run of characters other than letters, digits and `keep` replaced by '_'.

    File names of artifacts and offload directories keep a test id's '@', '=' and '-'; labels that go
    into pytest ids keep fewer ('-' separates the parts of an id), so callers pass their own `keep`."""
    s = re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", "_", text).strip("_")
    return s[:limit] or default


def device_slug(fingerprint: Mapping[str, Any]) -> str:
    """Filesystem-safe name from a device fingerprint: the default baseline name and the device's label.

    nvme-micron_7450-e2mu200-gen4x4-ext4 / virtio-vda-ext4. One rule, so that the baseline file name and
    the label a device prints can never disagree."""
    parts = []
    for k in ("kind", "model", "firmware"):
        if fingerprint.get(k):
            parts.append(str(fingerprint[k]))
    if fingerprint.get("pcie_gen"):
        parts.append(f"gen{fingerprint['pcie_gen']}x{fingerprint.get('pcie_width') or '?'}")
    if fingerprint.get("fs_type"):
        parts.append(str(fingerprint["fs_type"]))
    cleaned = [re.sub(r"[^a-z0-9.]+", "_", p.lower()).strip("_.") for p in parts]
    return "-".join(c for c in cleaned if c) or "unknown-device"


# ---- numbers --------------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float | None:
    """Median of the values, None when there are none (a summary of nothing is not zero)."""
    vals = [float(v) for v in values]
    return float(statistics.median(vals)) if vals else None


# ---- log tails ------------------------------------------------------------------------------------
def tail(text: Any, lines: int = 40, chars: int | None = None) -> str:
    """The last `lines` lines of a log (at most `chars` characters, cut marked with '…'); '' for none."""
    if not text:
        return ""
    s = "\n".join(str(text).strip().splitlines()[-lines:])
    return s if chars is None or len(s) <= chars else "…" + s[-chars:]


def file_tail(path: Path, lines: int = 40, chars: int | None = None) -> str:
    """`tail` of a log file; '' when the file is missing or unreadable (a child that never started)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return tail(text, lines, chars)
