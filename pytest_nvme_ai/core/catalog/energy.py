"""Energy of the measured ZeRO-Inference loops (measure/energy.py).

The counters are machine-wide (NVML for the GPU, RAPL for the CPU packages): they include what
anything else on the machine did during the loop, so these metrics are ungated by default. No
sum of the two components and no tokens per joule: each would repeat a number recorded here.
"""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import MetricSpec

ORDER = 35
METRICS = {
    "gpu_energy_per_token": MetricSpec("J/token", "lower", False, "GPU energy (NVML) per generated token"),
    "cpu_energy_per_token": MetricSpec("J/token", "lower", False, "CPU package energy (RAPL) per generated token"),
    "gpu_avg_power": MetricSpec("W", "lower", False, "GPU energy (NVML) / loop time"),
    "cpu_avg_power": MetricSpec("W", "lower", False, "CPU package energy (RAPL) / loop time"),
    "nvme_vs_cpu_energy_per_token": MetricSpec("ratio", "lower", False,
                                               "NVMe-offload / CPU-offload energy per token"),
}
