"""The one results.json reader: the report, `nvme-ai baseline promote` and `nvme-ai history import` use it.

Errors are ValueError / FileNotFoundError whose message names the file and says what to do (the CLI
prints it and exits 2); a file newer than this version is refused rather than half-read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_nvme_ai.core.schema import SCHEMA_VERSION


def results_path(raw: str | Path) -> Path:
    """A results.json path, or a run directory that holds one."""
    p = Path(raw).expanduser()
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"{p} not found: pass the results.json of a run (or its directory), e.g. reports/latest/results.json")
    return p


def check_schema(data: Any, where: str | Path) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with schema_version, run and tests; is this a results.json?")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{where}: no integer schema_version: it is not a pytest-nvme-ai results.json")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{where} has schema_version {version}, newer than this pytest-nvme-ai reads ({SCHEMA_VERSION}): "
            "upgrade pytest-nvme-ai (pip install -U pytest-nvme-ai) to read it")


def load_results(raw: str | Path) -> dict[str, Any]:
    """Read and check a results.json (or the one in a run directory)."""
    p = results_path(raw)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{p} is not valid JSON ({exc}): pass the results.json written by a pytest-nvme-ai run") from None
    check_schema(data, p)
    result: dict[str, Any] = data
    return result
