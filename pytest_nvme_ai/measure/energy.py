"""Energy of a measured loop: GPU from NVML's total-energy counter, CPU packages from RAPL.

Both counters are machine-wide, not per process: they include whatever else the GPU and the CPU
packages did during the loop (another session, the OS). That is why the metrics built from them
are ungated by default (core.metrics.CATALOG) and why they are read as close around the measured
`generate` call as possible, in the child that runs it.

* **GPU**: `nvmlDeviceGetTotalEnergyConsumption` (nvidia-ml-py) gives millijoules since the driver
  was loaded, a 64-bit counter (no wrap in practice). Volta and newer; older GPUs answer
  NVML_ERROR_NOT_SUPPORTED. The devices read are the ones the run uses, named by PCI bus id, or
  every visible device when the caller cannot say which (recorded in the meter's description).
* **CPU**: RAPL package zones under /sys/class/powercap (`intel-rapl:N`, name `package-N`; the
  AMD driver uses the same names). `energy_uj` wraps at `max_energy_range_uj` (tens to hundreds of
  kJ: minutes at full power), so the meter is polled during the loop (every forward pass) and adds
  each wrap; an interval too long to tell how often it wrapped drops the CPU figure with a note.
  Since the PLATYPUS fix (CVE-2020-8694) `energy_uj` is root-only on patched kernels.

Where a counter is not readable the meter says why (`reasons`), and the metrics are absent.
No torch import here: the worker child passes the bus ids it learnt from torch.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from pytest_nvme_ai.core.metrics import Metric

POWERCAP = Path("/sys/class/powercap")
# No CPU package draws more than this (today's largest server parts: ~500 W). A poll interval longer
# than range / this power could hide more than one wrap-around, so its reading is not trusted.
MAX_PACKAGE_WATTS = 1000.0


class EnergyUnavailable(RuntimeError):
    """A counter cannot be read here; the message is the reason recorded in the test."""


# ---- NVML (GPU) ---------------------------------------------------------------------------------

class NvmlCounter:
    """Total energy (mJ) of the run's GPUs, summed. `nvml` is the pynvml module (tests pass a fake)."""

    def __init__(self, nvml: Any, handles: Sequence[Any], description: str) -> None:
        self._nvml = nvml
        self._handles = tuple(handles)
        self.description = description

    @classmethod
    def open(cls, bus_ids: Sequence[str] | None = None, nvml: Any = None) -> "NvmlCounter":
        """Raise EnergyUnavailable naming what is missing (package, driver, support on this GPU)."""
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")  # the nvidia-ml-py distribution (untyped)
            except ImportError:
                raise EnergyUnavailable("GPU energy: nvidia-ml-py is not installed "
                                        "(pip install 'pytest-nvme-ai[inference]')") from None
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise EnergyUnavailable(f"GPU energy: NVML cannot start ({exc}): no NVIDIA driver here") from None
        try:
            handles = []
            if bus_ids:
                try:
                    handles = [nvml.nvmlDeviceGetHandleByPciBusId(b) for b in bus_ids]
                    description = f"NVML total energy of GPU(s) {', '.join(bus_ids)}"
                except nvml.NVMLError:
                    handles = []  # a bus id NVML does not know: read every GPU, and say so
            if not handles:
                count = nvml.nvmlDeviceGetCount()
                if count == 0:
                    raise EnergyUnavailable("GPU energy: NVML sees no GPU")
                handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
                description = f"NVML total energy of all {count} visible GPU(s)"
            for h in handles:
                nvml.nvmlDeviceGetTotalEnergyConsumption(h)  # fails here, not mid-run, where unsupported
        except nvml.NVMLError as exc:
            raise EnergyUnavailable(f"GPU energy: NVML's total-energy counter is not readable ({exc}); "
                                    "it needs a Volta or newer GPU") from None
        return cls(nvml, handles, description)

    def read_mj(self) -> int:
        return sum(int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles)


# ---- RAPL (CPU packages) ------------------------------------------------------------------------

@dataclass(frozen=True)
class RaplZone:
    path: Path          # .../intel-rapl:N
    name: str           # package-N
    max_range_uj: int   # energy_uj counts from 0 up to this value, then starts again at 0

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """Energy between two readings of a counter that wraps at `max_range` (at most one wrap)."""
    return after - before if after >= before else after + max_range - before


def rapl_zones(root: Path = POWERCAP) -> list[RaplZone]:
    """The package zones (sub-zones core/uncore/dram and psys are not CPU-package energy)."""
    zones = []
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:  # intel-rapl:0:0 is a sub-zone of package 0
            continue
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith("package-"):
            zones.append(RaplZone(d, name, int((d / "max_energy_range_uj").read_text().strip())))
    return zones


class RaplCounter:
    """Package energy (µJ) summed over packages, accumulated across wrap-arounds by `poll()`."""

    def __init__(self, zones: Sequence[RaplZone], clock: Callable[[], float] = time.monotonic) -> None:
        self.zones = tuple(zones)
        self._clock = clock
        self.description = f"RAPL {', '.join(z.name for z in self.zones)}"
        self._last: list[int] = []
        self._last_t = 0.0
        self.total_uj = 0
        self.ambiguous: str | None = None

    @classmethod
    def open(cls, root: Path = POWERCAP, clock: Callable[[], float] = time.monotonic) -> "RaplCounter":
        if not root.is_dir():
            raise EnergyUnavailable(f"CPU energy: {root} does not exist (no RAPL: a VM, or not an x86 host)")
        zones = rapl_zones(root)
        if not zones:
            raise EnergyUnavailable(f"CPU energy: no RAPL package zone under {root}")
        try:
            for z in zones:
                z.read_uj()
        except PermissionError:
            raise EnergyUnavailable(f"CPU energy: {zones[0].path / 'energy_uj'} is readable by root only on "
                                    "this kernel (the PLATYPUS fix): run as root or grant read access") from None
        return cls(zones, clock)

    def start(self) -> None:
        self._last, self._last_t = [z.read_uj() for z in self.zones], self._clock()
        self.total_uj, self.ambiguous = 0, None

    def poll(self) -> None:
        now, values = self._clock(), [z.read_uj() for z in self.zones]
        dt = now - self._last_t
        for z, before, after in zip(self.zones, self._last, values):
            if dt > z.max_range_uj / 1e6 / MAX_PACKAGE_WATTS and self.ambiguous is None:
                self.ambiguous = (f"CPU energy: {dt:.0f} s between two RAPL readings of {z.name} could hide "
                                  f"more than one wrap-around of its {z.max_range_uj / 1e6:.0f} J counter")
            self.total_uj += wrapped_delta(before, after, z.max_range_uj)
        self._last, self._last_t = values, now


# ---- the meter the child uses -------------------------------------------------------------------

@dataclass(frozen=True)
class LoopEnergy:
    """Energy of one measured loop, in joules; None where the counter was not readable."""

    gpu_joules: float | None
    cpu_joules: float | None


class EnergyMeter:
    """start() before a measured loop, poll() during it (cheap: a few sysfs reads), stop() after."""

    def __init__(self, gpu: NvmlCounter | None, cpu: RaplCounter | None, reasons: Sequence[str]) -> None:
        self.gpu, self.cpu = gpu, cpu
        self.reasons = list(reasons)
        self._gpu0 = 0

    @classmethod
    def open(cls, *, cuda: bool, bus_ids: Sequence[str] | None = None, powercap: Path = POWERCAP,
             nvml: Any = None) -> "EnergyMeter":
        """Whatever counters are readable; `reasons` says why each missing one is missing."""
        gpu = cpu = None
        reasons: list[str] = []
        if cuda:
            try:
                gpu = NvmlCounter.open(bus_ids, nvml)
            except EnergyUnavailable as exc:
                reasons.append(str(exc))
        else:
            reasons.append("GPU energy: the run uses no GPU")
        try:
            cpu = RaplCounter.open(powercap)
        except EnergyUnavailable as exc:
            reasons.append(str(exc))
        return cls(gpu, cpu, reasons)

    @property
    def description(self) -> str:
        return "; ".join(c.description for c in (self.gpu, self.cpu) if c is not None) or "no energy counter"

    def start(self) -> None:
        if self.gpu is not None:
            self._gpu0 = self.gpu.read_mj()
        if self.cpu is not None:
            self.cpu.start()

    def poll(self) -> None:
        if self.cpu is not None:
            self.cpu.poll()

    def stop(self) -> LoopEnergy:
        gpu_j = cpu_j = None
        if self.gpu is not None:
            gpu_j = (self.gpu.read_mj() - self._gpu0) / 1e3
        if self.cpu is not None:
            self.cpu.poll()
            if self.cpu.ambiguous:
                if self.cpu.ambiguous not in self.reasons:
                    self.reasons.append(self.cpu.ambiguous)
            else:
                cpu_j = self.cpu.total_uj / 1e6
        return LoopEnergy(gpu_j, cpu_j)


# ---- metrics ------------------------------------------------------------------------------------

def energy_metrics(loops: Iterable[tuple[float | None, float | None, float, float]]) -> dict[str, Metric]:
    """`gpu_/cpu_energy_per_token` (J/token) and `gpu_/cpu_avg_power` (W), one sample per loop.

    Each loop is (gpu joules, cpu joules, seconds, tokens generated). A component is recorded only
    when every loop has it: a metric whose samples mix measured and missing loops would mislead.
    No sum of the two and no tokens per joule: each would repeat numbers recorded here.
    """
    loops = list(loops)
    out: dict[str, Metric] = {}
    for part, index in (("gpu", 0), ("cpu", 1)):
        joules = [lp[index] for lp in loops]
        if not loops or any(j is None for j in joules):
            continue
        per_token = [float(j) / lp[3] for j, lp in zip(joules, loops) if lp[3] > 0]  # type: ignore[arg-type]
        power = [float(j) / lp[2] for j, lp in zip(joules, loops) if lp[2] > 0]  # type: ignore[arg-type]
        if len(per_token) == len(loops):
            out[f"{part}_energy_per_token"] = Metric.of(f"{part}_energy_per_token", per_token)
        if len(power) == len(loops):
            out[f"{part}_avg_power"] = Metric.of(f"{part}_avg_power", power)
    return out


def energy_ratio(nvme: Mapping[str, Metric], cpu: Mapping[str, Metric]) -> tuple[list[float], str | None]:
    """Per-loop NVMe-offload ÷ CPU-offload energy per token, and which component it is from.

    The GPU's counter where both runs measured it (on a GPU machine that is where the offload's cost
    shows), else the CPU packages'; ([], None) when the two runs share no component.
    """
    for name in ("gpu_energy_per_token", "cpu_energy_per_token"):
        n, c = nvme.get(name), cpu.get(name)
        if n is not None and c is not None and all(v > 0 for v in c.samples):
            pairs = list(zip(n.samples, c.samples))
            if len(n.samples) != len(c.samples):  # unequal loop counts: compare medians, not loops
                pairs = [(n.value, c.value)]
            return [a / b for a, b in pairs], name
    return [], None
