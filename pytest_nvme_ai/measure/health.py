"""Drive health during a measurement: SMART temperature and thermal counters every few seconds.

SMART read before and after a run cannot say whether a figure was taken while the drive throttled:
a drive heats within a minute of sequential reads and recovers as soon as they stop. A sampler
thread reads SMART (through `measure.device.read_smart`, nvme-cli's JSON parsed there) every
`interval_s` while a measurement runs. A measurement counts as *throttled* when, during it, the
warning- or critical-composite-temperature time grew, or critical_warning's temperature bit
(0x02) was set: the drive spent time above the temperatures at which it slows itself down.
Where SMART cannot be read (not NVMe, no nvme-cli, no permission) nothing is sampled and the
reason is kept.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

Reader = Callable[[], Mapping[str, Any]]
TEMPERATURE_WARNING_BIT = 0x02   # NVMe critical_warning bit 1: temperature above/below a threshold


@dataclass(frozen=True)
class Sample:
    wall: float                      # time.time(): lines up with other records of the run
    temperature_c: float | None
    warning_temp_time: int | None    # minutes above the warning composite temperature (lifetime counter)
    critical_comp_time: int | None   # minutes above the critical composite temperature
    critical_warning: int | None

    def to_list(self) -> list[Any]:
        return [round(self.wall, 3), self.temperature_c, self.warning_temp_time, self.critical_comp_time,
                self.critical_warning]


SAMPLE_FIELDS = ("wall", "temperature_c", "warning_temp_time", "critical_comp_time", "critical_warning")


def sample_of(reading: Mapping[str, Any], wall: float) -> Sample:
    def num(key: str) -> Any:
        v = reading.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return Sample(wall, num("temperature_c"), num("warning_temp_time"), num("critical_comp_time"),
                  num("critical_warning"))


def throttled(samples: Sequence[Sample]) -> tuple[bool, str]:
    """Did the drive spend time at a throttling temperature while these samples were taken?"""
    if not samples:
        return False, "no samples"
    for key, what in (("warning_temp_time", "warning"), ("critical_comp_time", "critical")):
        vals = [getattr(s, key) for s in samples if getattr(s, key) is not None]
        if len(vals) >= 2 and vals[-1] > vals[0]:
            return True, f"time above the {what} temperature grew by {vals[-1] - vals[0]} min during the measurement"
    hot = [s for s in samples if s.critical_warning is not None and s.critical_warning & TEMPERATURE_WARNING_BIT]
    if hot:
        return True, f"critical_warning temperature bit set in {len(hot)} of {len(samples)} samples"
    temps = [s.temperature_c for s in samples if s.temperature_c is not None]
    peak = f", peak {max(temps):g} °C" if temps else ""
    return False, f"no thermal counter moved over {len(samples)} samples{peak}"


class HealthSampler:
    """Context manager: a daemon thread samples `reader` every `interval_s` until exit.

    The first reading is taken synchronously, so an unavailable SMART source starts no thread and
    `unavailable` says why. A reading that fails later ends sampling with the reason kept.
    """

    def __init__(self, reader: Reader, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        if interval_s <= 0:
            raise ValueError(f"health sampling interval {interval_s!r} must be positive")
        self._reader = reader
        self.interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.samples: list[Sample] = []
        self.unavailable: str | None = None

    def _take(self) -> bool:
        try:
            reading = self._reader()
        except Exception as exc:  # noqa: BLE001 - a health reading never fails a measurement
            reading = {"unavailable": f"{type(exc).__name__}: {exc}"}
        if "unavailable" in reading:
            self.unavailable = str(reading["unavailable"])
            return False
        with self._lock:
            self.samples.append(sample_of(reading, self._clock()))
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._take():
                return

    def __enter__(self) -> HealthSampler:
        if self._take():
            self._thread = threading.Thread(target=self._loop, name="nvme-ai-health", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 35)  # nvme-cli's own timeout is 30 s
        if self.unavailable is None:
            self._take()  # the closing reading: a counter that moved in the last interval still counts

    def between(self, start: float, end: float) -> list[Sample]:
        """Samples taken during [start, end], plus the last one before and first one after: a counter
        that moved inside the interval shows as a difference between them."""
        with self._lock:
            ss = list(self.samples)
        before = [s for s in ss if s.wall < start][-1:]
        after = [s for s in ss if s.wall > end][:1]
        return before + [s for s in ss if start <= s.wall <= end] + after

    def summary(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        if self.unavailable is not None and not self.samples:
            return {"unavailable": self.unavailable}
        ss = self.between(start, end) if start is not None and end is not None else list(self.samples)
        hot, why = throttled(ss)
        temps = [s.temperature_c for s in ss if s.temperature_c is not None]
        return {"interval_s": self.interval_s, "fields": list(SAMPLE_FIELDS), "samples": [s.to_list() for s in ss],
                "throttled": hot, "throttle_reason": why,
                "temperature_c_max": max(temps) if temps else None, "temperature_c_min": min(temps) if temps else None,
                **({"stopped": self.unavailable} if self.unavailable else {})}


def smart_reader(identity: Any) -> Reader:
    """SMART of the drive behind a target, parsed by measure.device (nvme-cli JSON, Kelvin -> °C)."""
    from pytest_nvme_ai.measure.device import read_smart

    return lambda: read_smart(identity)


def sampler_for(identity: Any, interval_s: float) -> HealthSampler:
    return HealthSampler(smart_reader(identity), interval_s)
