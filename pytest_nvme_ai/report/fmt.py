"""Formatting and tolerant reads shared by every part of the report.

Everything read from results.json may be missing, null or of the wrong type
(a partial run, an older plugin, a hand-edited file); these helpers turn that
into "—" or an empty mapping instead of an exception.
"""
from __future__ import annotations

from typing import Any, Mapping

from pytest_nvme_ai.core.metrics import format_value
from pytest_nvme_ai.core.text import format_size
from pytest_nvme_ai.core.text import tail as text_tail

_TEXT_LIMIT = 4000    # longrepr / log tails: enough to diagnose, small enough to mail
_LINE_LIMIT = 40


# ---- tolerant reads ---------------------------------------------------------------------------
def as_map(v: Any) -> Mapping[str, Any]:
    """The value if it is a JSON object, else an empty one: a null or a wrong type reads as 'not recorded'."""
    return v if isinstance(v, Mapping) else {}


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ---- formatting -------------------------------------------------------------------------------
def num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, a string where a number belongs)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def fmt(v: Any, unit: str = "") -> str:
    f = num(v)
    if f is None:
        return "—" if v is None or v == "" else str(v)
    if unit in ("IO/s", "tokens/s"):
        # Rates read better as 14.4k IO/s than 1.435e+04 IO/s.
        short = "tok/s" if unit == "tokens/s" else unit
        for threshold, scale, prefix in ((1e6, 1e6, "M"), (1e4, 1e3, "k")):
            if abs(f) >= threshold:
                return f"{f / scale:.3g}{prefix} {short}"
        return f"{f:.4g} {short}"
    return format_value(f, unit) if unit else f"{f:.4g}"


def fmt_delta(d: Any) -> str:
    f = num(d)
    return "—" if f is None else f"{f * 100:+.1f}%"


def fmt_ratio(r: Any) -> str:
    f = num(r)
    return "—" if f is None else f"×{f:.2f}"


def fmt_bytes(n: Any, *, binary: bool = False) -> str:
    """Capacity in decimal units (as drives are sold), memory in binary units (as the kernel counts)."""
    f = num(n)
    if f is None:
        return "—"
    base, units = ((1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB")) if binary
                   else (1000.0, ("B", "kB", "MB", "GB", "TB", "PB")))
    i = 0
    while abs(f) >= base and i < len(units) - 1:
        f /= base
        i += 1
    return f"{f:.3g} {units[i]}"


def fmt_size(n: int | None) -> str:
    """A block or file size as fio writes it (4K, 1M), '—' when the record has none."""
    return "—" if n is None else format_size(n)


def tail(text: Any, limit: int = _TEXT_LIMIT, lines: int = _LINE_LIMIT) -> str:
    return text_tail(text, lines, limit)


def first_line(text: Any, limit: int = 200) -> str:
    for line in str(text or "").splitlines():
        if line.strip():
            s = line.strip()
            return s if len(s) <= limit else s[:limit] + "…"
    return ""


def params_text(params: Mapping[str, Any]) -> str:
    # Nested values (a parametrized dataclass serialised whole) repeat the scalar params: leave them out.
    return ", ".join(f"{k}={v}" for k, v in params.items() if not isinstance(v, (Mapping, list)))


def tolerance_text(v: Any, mdc: Any = None, blind: Any = False) -> str:
    """A tolerance is a percentage everywhere (gate.Comparison.tolerance, run.tolerance): 150 is ±150%.
    With the gate's minimum detectable change (percent) when the baseline window knows it."""
    f = num(v)
    if f is None:
        return "—"
    m = num(mdc)
    return f"±{f:g}%" + (f" (detects ≥{m:.0f}%{'!' if blind else ''})" if m is not None else "")
