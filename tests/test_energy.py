"""Energy metrics (measure/energy.py) from recorded NVML and RAPL readings.

Where the readings come from (no GPU and no RAPL on the build machines, so none was recorded here):
* RAPL: the zone names, the layout (package zones with core/dram sub-zones) and the starting
  `energy_uj` / `max_energy_range_uj` values are a public snapshot of a 4-socket Intel server's
  /sys/class/powercap (package-0 5597181429 µJ, package-1 44097140474 µJ, range 65532610987 µJ).
  The later readings are derived from them: the start plus power × time at the wattage named in each
  test, and, for the wrap test, a start placed just below the range. They are not measured.
* NVML: `nvmlDeviceGetTotalEnergyConsumption` returns an unsigned 64-bit count of millijoules since
  the driver loaded. The sequences below follow that contract at a wattage named in each test
  (derived, not recorded on a GPU); the error classes are the real ones from nvidia-ml-py.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_nvme_ai.core.metrics import CATALOG, Metric
from pytest_nvme_ai.measure.energy import (
    EnergyMeter,
    EnergyUnavailable,
    NvmlCounter,
    RaplCounter,
    RaplZone,
    energy_metrics,
    energy_ratio,
    rapl_zones,
    wrapped_delta,
)
from pytest_nvme_ai.measure.zero_inference.metrics import LoopMeasurement, loop_metrics

RANGE = 65532610987  # µJ, from the public snapshot
SNAPSHOT = {  # zone dir -> (name, energy_uj)
    "intel-rapl:0": ("package-0", 5597181429), "intel-rapl:0:0": ("core", 17890384969),
    "intel-rapl:0:1": ("dram", 42654180108), "intel-rapl:1": ("package-1", 44097140474),
    "intel-rapl:1:0": ("core", 28312441531), "intel-rapl:1:1": ("dram", 28336196162),
    "intel-rapl:2": ("psys", 10537557287),  # a psys zone (platform, not a package) must be ignored
}


def make_powercap(root: Path, values: dict[str, tuple[str, int]] = SNAPSHOT) -> Path:
    for zone, (name, energy) in values.items():
        d = root / zone
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{RANGE}\n")
    return root


def set_energy(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ---- RAPL -----------------------------------------------------------------------------------------

def test_only_package_zones_are_read(tmp_path: Path) -> None:
    zones = rapl_zones(make_powercap(tmp_path))
    assert [z.name for z in zones] == ["package-0", "package-1"]
    assert all(z.max_range_uj == RANGE for z in zones)


def test_wrapped_delta() -> None:
    assert wrapped_delta(100, 350, RANGE) == 250
    assert wrapped_delta(RANGE - 1_000_000, 2_000_000, RANGE) == 3_000_000  # 1 J before the wrap, 2 J after


def test_rapl_sums_packages_across_polls_and_a_wrap(tmp_path: Path) -> None:
    """Two packages for 2 s: package-0 at 150 W starting 100 J below the wrap, package-1 at 90 W."""
    root = make_powercap(tmp_path, {**SNAPSHOT, "intel-rapl:0": ("package-0", RANGE - 100_000_000)})
    clock = Clock()
    rapl = RaplCounter.open(root, clock)
    rapl.start()
    for step in (1, 2):  # one poll per second, as the forward hook would
        clock.t += 1.0
        p0 = (RANGE - 100_000_000 + step * 150_000_000) % RANGE
        set_energy(root, "intel-rapl:0", p0)
        set_energy(root, "intel-rapl:1", 44097140474 + step * 90_000_000)
        rapl.poll()
    assert rapl.ambiguous is None
    assert rapl.total_uj == 2 * 150_000_000 + 2 * 90_000_000  # 480 J


def test_rapl_interval_that_could_hide_two_wraps_is_dropped(tmp_path: Path) -> None:
    root = make_powercap(tmp_path)
    clock = Clock()
    meter = EnergyMeter(None, RaplCounter.open(root, clock), [])
    meter.start()
    clock.t += RANGE / 1e6 / 1000 + 1  # longer than the counter's range at 1 kW: 66.5 s
    set_energy(root, "intel-rapl:0", 5597181429 + 1)
    loop = meter.stop()
    assert loop.cpu_joules is None
    assert any("wrap-around" in r and "package-0" in r for r in meter.reasons), meter.reasons


def test_rapl_root_only_counter_gives_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_powercap(tmp_path)

    def denied(self: RaplZone) -> int:  # what a non-root read of a 0400 energy_uj raises
        raise PermissionError(13, "Permission denied", str(self.path / "energy_uj"))

    monkeypatch.setattr(RaplZone, "read_uj", denied)
    with pytest.raises(EnergyUnavailable, match="root only.*PLATYPUS"):
        RaplCounter.open(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root; the monkeypatched test covers it")
def test_rapl_unreadable_file_as_non_root(tmp_path: Path) -> None:
    root = make_powercap(tmp_path)
    (root / "intel-rapl:0" / "energy_uj").chmod(0o000)
    with pytest.raises(EnergyUnavailable, match="root only"):
        RaplCounter.open(root)


def test_no_powercap_gives_the_reason(tmp_path: Path) -> None:
    with pytest.raises(EnergyUnavailable, match="does not exist"):
        RaplCounter.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EnergyUnavailable, match="no RAPL package zone"):
        RaplCounter.open(tmp_path / "empty")


# ---- NVML -----------------------------------------------------------------------------------------

class FakeNvml:
    """The slice of pynvml the counter uses; the error classes are nvidia-ml-py's own."""

    def __init__(self, energy_mj: dict[str, Iterator[int]], *, init_error: Any = None,
                 energy_error: Any = None) -> None:
        import pynvml

        self.NVMLError = pynvml.NVMLError
        self._pynvml = pynvml
        self._energy = energy_mj
        self._init_error, self._energy_error = init_error, energy_error
        self.bus_ids = list(energy_mj)

    def nvmlInit(self) -> None:
        if self._init_error is not None:
            raise self._pynvml.NVMLError(self._init_error)

    def nvmlDeviceGetCount(self) -> int:
        return len(self.bus_ids)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return self.bus_ids[i]

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> str:
        if bus_id not in self._energy:
            raise self._pynvml.NVMLError(self._pynvml.NVML_ERROR_NOT_FOUND)
        return bus_id

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if self._energy_error is not None:
            raise self._pynvml.NVMLError(self._energy_error)
        return next(self._energy[handle])


pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install nvidia-ml-py)")

H200 = "00000000:18:00.0"
OTHER = "00000000:2A:00.0"


def test_nvml_reads_the_runs_gpu_only() -> None:
    """Run's GPU at 420 W for 2.5 s (1050 J): a value read at open, then start and stop of the loop."""
    start = 3_215_774_112  # mJ since the driver loaded
    fake = FakeNvml({H200: iter([start, start, start + 1_050_000]), OTHER: iter([9] * 3)})
    meter = EnergyMeter.open(cuda=True, bus_ids=[H200], powercap=Path("/nonexistent"), nvml=fake)
    assert meter.gpu is not None and H200 in meter.gpu.description
    meter.start()
    loop = meter.stop()
    assert loop.gpu_joules == pytest.approx(1050.0)
    assert loop.cpu_joules is None and any("does not exist" in r for r in meter.reasons)


def test_nvml_unknown_bus_id_reads_every_gpu_and_says_so() -> None:
    fake = FakeNvml({H200: iter([10, 10, 2010]), OTHER: iter([20, 20, 1020])})
    counter = NvmlCounter.open(["00000000:99:00.0"], fake)
    assert "all 2 visible" in counter.description
    assert counter.read_mj() == 30 and counter.read_mj() == 3030


def test_nvml_not_supported_gives_the_reason() -> None:
    fake = FakeNvml({H200: iter([0])}, energy_error=pynvml.NVML_ERROR_NOT_SUPPORTED)
    with pytest.raises(EnergyUnavailable, match="Volta or newer"):
        NvmlCounter.open([H200], fake)


def test_nvml_without_a_driver_is_real_here() -> None:
    """The real nvidia-ml-py on a machine without an NVIDIA driver (skipped where one is loaded)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is loaded here; this test is for machines without one")
    with pytest.raises(EnergyUnavailable, match="NVML cannot start"):
        NvmlCounter.open()


def test_meter_on_this_machine_names_what_is_missing() -> None:
    """What the build machines record: no GPU counter, and RAPL only where /sys/class/powercap has it."""
    meter = EnergyMeter.open(cuda=False)
    assert meter.gpu is None and "GPU energy: the run uses no GPU" in meter.reasons
    if meter.cpu is None:
        assert any(r.startswith("CPU energy:") for r in meter.reasons), meter.reasons
    else:  # RAPL readable here: a short busy loop must show some package energy
        meter.start()
        sum(i * i for i in range(200_000))
        loop = meter.stop()
        assert loop.cpu_joules is not None and loop.cpu_joules >= 0


# ---- metrics --------------------------------------------------------------------------------------

def test_energy_metrics_worked_numbers() -> None:
    # loop 1: 1050 J GPU, 480 J CPU over 2.5 s for 64 tokens; loop 2: 1000 J, 500 J over 2.0 s
    m = energy_metrics([(1050.0, 480.0, 2.5, 64), (1000.0, 500.0, 2.0, 64)])
    assert m["gpu_energy_per_token"].samples == pytest.approx((16.40625, 15.625))
    assert m["gpu_avg_power"].samples == pytest.approx((420.0, 500.0))
    assert m["cpu_energy_per_token"].samples == pytest.approx((7.5, 7.8125))
    assert m["cpu_avg_power"].samples == pytest.approx((192.0, 250.0))
    assert m["gpu_energy_per_token"].unit == "J/token" and m["gpu_avg_power"].unit == "W"


def test_a_component_missing_in_any_loop_is_not_recorded() -> None:
    m = energy_metrics([(None, 480.0, 2.5, 64), (1000.0, 500.0, 2.0, 64)])
    assert set(m) == {"cpu_energy_per_token", "cpu_avg_power"}
    assert energy_metrics([(None, None, 1.0, 8)]) == {}


def test_catalog_has_no_sum_and_no_tokens_per_joule() -> None:
    for name in ("gpu_energy_per_token", "cpu_energy_per_token", "gpu_avg_power", "cpu_avg_power",
                 "nvme_vs_cpu_energy_per_token"):
        assert name in CATALOG and not CATALOG[name].gated and CATALOG[name].better == "lower"
    assert not [n for n in CATALOG if "per_joule" in n or n in ("energy_per_token", "total_energy_per_token")]


def test_loop_metrics_include_energy_only_when_measured() -> None:
    base = dict(total_latency=2.0, prefill_latency=0.5, forward_calls=8, read_bytes=0, prefill_read_bytes=0,
                peak_rss=1, peak_gpu_mem=None, new_tokens=8)
    plain = loop_metrics([LoopMeasurement(**base)], batch_size=4, prompt_len=32, gen_len=8)
    assert not [n for n in plain if "energy" in n or "power" in n]
    measured = loop_metrics([LoopMeasurement(**base, cpu_energy=64.0)], batch_size=4, prompt_len=32, gen_len=8)
    assert measured["cpu_energy_per_token"].value == pytest.approx(2.0)  # 64 J / (4 × 8 tokens)
    assert measured["cpu_avg_power"].value == pytest.approx(32.0)       # 64 J / 2 s
    assert LoopMeasurement.from_dict(LoopMeasurement(**base).to_dict()).gpu_energy is None


def test_energy_ratio_prefers_gpu_and_names_its_basis() -> None:
    nvme = {"gpu_energy_per_token": Metric.of("gpu_energy_per_token", [4.0, 6.0]),
            "cpu_energy_per_token": Metric.of("cpu_energy_per_token", [1.0, 1.0])}
    cpu = {"gpu_energy_per_token": Metric.of("gpu_energy_per_token", [2.0, 3.0]),
           "cpu_energy_per_token": Metric.of("cpu_energy_per_token", [2.0, 2.0])}
    assert energy_ratio(nvme, cpu) == ([2.0, 2.0], "gpu_energy_per_token")
    del nvme["gpu_energy_per_token"]
    assert energy_ratio(nvme, cpu) == ([0.5, 0.5], "cpu_energy_per_token")
    assert energy_ratio({}, cpu) == ([], None)


# ---- report ---------------------------------------------------------------------------------------

def _zi_results(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "tests": [{
        "nodeid": "suites/test_zero_inference.py::test_zero_inference[@default-opt-1.3b-bs8-nvme-q16]",
        "suite": "zero_inference", "outcome": "passed", "verdict": "new",
        "params": {"model": "opt-1.3b", "batch_size": 8, "offload": "nvme", "quant_bits": 16, "kv_offload": False,
                   "prompt_len": 512, "gen_len": 32},
        "extra": {"run_outcome": "ok"},
        "metrics": {name: Metric.of(name, samples).to_dict() for name, samples in metrics.items()}}]}


def test_report_shows_energy_next_to_throughput(tmp_path: Path) -> None:
    from pytest_nvme_ai.report import render_run

    out = tmp_path / "index.html"
    render_run(_zi_results({"total_throughput": [12.0, 12.5], "gpu_energy_per_token": [16.4, 15.6],
                            "gpu_avg_power": [420.0, 500.0]}), out)
    html = out.read_text(encoding="utf-8")
    headers = re.findall(r"<th[^>]*>([^<]+)</th>", html)
    assert headers.index("GPU J/token") == headers.index("total tok/s") + 1 and "GPU W" in headers
    assert "CPU J/token" not in headers  # a column nobody measured is left out
    assert "16 J/token" in html


def test_report_without_energy_has_no_energy_columns(tmp_path: Path) -> None:
    from pytest_nvme_ai.report import render_run

    out = tmp_path / "index.html"
    render_run(_zi_results({"total_throughput": [12.0, 12.5]}), out)
    assert "J/token" not in out.read_text(encoding="utf-8")
