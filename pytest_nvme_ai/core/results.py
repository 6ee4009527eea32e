"""The one results.json reader: the report, `nvme-ai baseline promote` and `nvme-ai history import` use it.

Errors are ValueError / FileNotFoundError whose message names the file and says what to do (the CLI
prints it and exits 2); a file newer than this version is refused rather than half-read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

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


# A test's (and a comparison's) verdict, as results.json stores it; None in the file means not gated
# (skipped, interrupted, or nothing measured). "error": the test failed or errored without a regression.
# "unknown": the gate (window or A/B) cannot tell a change of the tolerance's size from noise here; the test
# passes (yellow), and fails under --nvme-ai-strict. A/B verdicts "same"/"worse"/"better" stay in the A/B
# record (tests[].ab); the test's verdict maps them: worse -> regression, better -> improvement, same -> pass.
Verdict = Literal["pass", "regression", "improvement", "new", "incomparable", "error", "unknown"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


@dataclass(frozen=True)
class SuiteTest:
    """A suite's test function, named by its declared suite (TestRecord.suite, results.json `suite`) and its
    function name: how the report recognises a particular test without matching node-id substrings."""

    suite: str
    function: str

    @classmethod
    def of(cls, test: Mapping[str, Any]) -> "SuiteTest":
        """The suite test of a results.json test record (the function is the key's last `::` part,
        without its parameters)."""
        key = str(test.get("key") or test.get("nodeid") or "")
        return cls(str(test.get("suite") or ""), key.split("[", 1)[0].rsplit("::", 1)[-1])


SEQ_READ_CONCURRENT = SuiteTest("seq_read", "test_seq_read_concurrent")   # suites/test_seq_read.py
SEQ_READ_REMOTE = SuiteTest("seq_read", "test_seq_read_remote")
WRITE_CHECKPOINT = SuiteTest("write", "test_checkpoint")                      # suites/test_write.py
