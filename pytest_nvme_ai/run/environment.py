"""The machine a run happened on. Reuses pytest-benchmark's machine and commit info."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

VERSIONED_PACKAGES = ("deepspeed", "torch", "transformers", "accelerate", "pytest", "pytest-benchmark", "numpy")


def fio_version() -> str | None:
    exe = shutil.which("fio")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.removeprefix("fio-") or None


def package_versions() -> dict[str, str | None]:
    """Versions from package metadata: no heavy import (torch takes seconds)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "fio": fio_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_info() -> list[dict[str, str]] | None:
    """GPUs via nvidia-smi when present; None means no NVIDIA GPU was found (not 'unknown')."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version,pci.bus_id", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(dict(zip(("name", "memory", "driver", "bus_id"), parts)))
    return gpus or None


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    info = pytest_benchmark_generate_machine_info()
    return info


def commit_info() -> dict[str, Any]:
    from pytest_benchmark.utils import get_commit_info

    return get_commit_info()


def collect() -> dict[str, Any]:
    mi = machine_info()
    cpu = mi.get("cpu") or {}
    return {
        "kernel": f"{mi.get('system')} {mi.get('release')}",
        "cpu": {"brand": cpu.get("brand_raw"), "count": cpu.get("count") or os.cpu_count(), "arch": mi.get("machine")},
        "memory": memory_bytes(),
        "gpu": gpu_info(),
        "node": mi.get("node"),
        "versions": package_versions(),
        "machine_info": {k: v for k, v in mi.items() if k != "cpu"},
    }
