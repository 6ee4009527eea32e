"""Write endurance: what a workload's writes cost of a drive's rated life.

Units follow drive datasheets: TBW in decimal terabytes (10^12 bytes); DWPD (drive writes per day)
converts with TBW = DWPD x capacity x 365 x warranty years (JEDEC's convention, no leap days).
"Projected life" is the days until the rated TBW is reached if the workload's write rate were kept up
continuously, day and night: a floor for a drive that only runs the workload part of the time.
The bytes are host writes (what the block layer sent); the drive's own write amplification is not in
them, which is what a rating in host TBW assumes too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

TB = 10**12
SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365


class EnduranceError(ValueError):
    """Bad endurance input; the message says what to pass instead."""


@dataclass(frozen=True)
class RatedEndurance:
    """A drive's rated write endurance."""

    tbw: float        # terabytes written (10^12 B) over the warranty
    source: str       # how it was given, e.g. "rated 600 TBW" or "1 DWPD x 1.92 TB x 5 years"

    @property
    def bytes(self) -> float:
        return self.tbw * TB


@dataclass(frozen=True)
class EnduranceUse:
    """One run's writes against a rating."""

    rated: RatedEndurance
    written_bytes: int        # host bytes the run wrote to the drive
    seconds: float            # how long the run took
    write_rate: float         # B/s
    life_days: float          # days to the rated TBW at write_rate, run continuously (inf when nothing was written)
    run_share: float          # share of the rated TBW this run used (1.0 = all of it)


def _positive(name: str, value: float, hint: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise EnduranceError(f"{name} {value!r} must be a positive number; {hint}")
    return v


def _non_negative(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise EnduranceError(f"{name} {value!r} must be zero or more")
    return v


def parse_tb(text: str) -> float:
    """A rated TBW from a setting: a positive number of terabytes, e.g. "600" or "600TB"."""
    s = str(text).strip()
    number = s[:-2].strip() if s.upper().endswith("TB") else s
    try:
        value = float(number)
    except ValueError:
        raise EnduranceError(f"{text!r} is not a number of terabytes; give the drive's rated TBW, e.g. 600") from None
    return _positive("rated TBW", value, "give the drive's rated TBW from its datasheet, e.g. 600")


def parse_positive(text: str) -> float:
    """A positive number from a setting (DWPD, warranty years)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise EnduranceError(f"{text!r} is not a number") from None
    return _positive("value", value, "e.g. 1 (DWPD) or 5 (years)")


def rated_from_tbw(tbw: float) -> RatedEndurance:
    v = _positive("rated TBW", tbw, "give the drive's rated TBW from its datasheet, e.g. 600")
    return RatedEndurance(v, f"rated {v:g} TBW")


def rated_from_dwpd(dwpd: float, capacity_bytes: int, warranty_years: float) -> RatedEndurance:
    """TBW = DWPD x capacity x 365 x warranty years."""
    d = _positive("DWPD", dwpd, "give the drive writes per day from the datasheet, e.g. 1")
    cap = _positive("capacity", capacity_bytes, "the drive's capacity in bytes (from the device, or the datasheet)")
    years = _positive("warranty years", warranty_years, "e.g. 5")
    tbw = d * cap * DAYS_PER_YEAR * years / TB
    return RatedEndurance(tbw, f"{d:g} DWPD x {cap / TB:.3g} TB x {years:g} years = {tbw:.4g} TBW")


def rated(tbw: float | None, dwpd: float | None = None, capacity_bytes: int | None = None,
          warranty_years: float | None = None) -> RatedEndurance | None:
    """The rating from the settings: TBW wins; else DWPD needs a capacity and warranty years; None if unset."""
    if tbw is not None:
        if dwpd is not None:
            raise EnduranceError("both a rated TBW and a DWPD were given; give one (the TBW is the datasheet's "
                                 "figure, DWPD x capacity x years the fallback)")
        return rated_from_tbw(tbw)
    if dwpd is None:
        return None
    if capacity_bytes is None:
        raise EnduranceError("a DWPD rating needs the drive's capacity, which could not be read from the target's "
                             "device; give --nvme-ai-rated-tbw instead")
    if warranty_years is None:
        raise EnduranceError("a DWPD rating needs the warranty in years (--nvme-ai-warranty-years, e.g. 5)")
    return rated_from_dwpd(dwpd, capacity_bytes, warranty_years)


def projected_life_days(rating: RatedEndurance, write_rate: float) -> float:
    """Days until the rated TBW at `write_rate` B/s, written continuously; inf when the rate is zero."""
    rate = _non_negative("write rate (B/s)", write_rate)
    return math.inf if rate == 0 else rating.bytes / (rate * SECONDS_PER_DAY)


def run_share(rating: RatedEndurance, written_bytes: int) -> float:
    """Share of the rated TBW that `written_bytes` used (1.0 = all of it)."""
    return _non_negative("written bytes", written_bytes) / rating.bytes


def endurance_use(rating: RatedEndurance, written_bytes: int, seconds: float) -> EnduranceUse:
    """A run's write rate, projected life and share of rated life."""
    w = _non_negative("written bytes", written_bytes)
    s = _positive("run duration (s)", seconds, "the run's measured wall time")
    rate = w / s
    return EnduranceUse(rating, int(w), s, rate, projected_life_days(rating, rate), run_share(rating, int(w)))


def bytes_per(written_bytes: int, units: float, unit: str) -> float:
    """Bytes written per unit of work (step, checkpoint, cached token)."""
    w = _non_negative("written bytes", written_bytes)
    n = float(units)
    if not math.isfinite(n) or n <= 0:
        raise EnduranceError(f"{units!r} {unit}s: bytes per {unit} needs at least one {unit} (got {units!r})")
    return w / n


def bytes_per_step(written_bytes: int, steps: int) -> float:
    return bytes_per(written_bytes, steps, "step")


def bytes_per_checkpoint(written_bytes: int, checkpoints: int) -> float:
    return bytes_per(written_bytes, checkpoints, "checkpoint")


def bytes_per_token(written_bytes: int, tokens: int) -> float:
    """Bytes per cached KV token (the tokens whose KV was written to the target)."""
    return bytes_per(written_bytes, tokens, "cached token")
