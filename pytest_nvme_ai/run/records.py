"""What a measured test leaves behind: its record, and the `nvme_ai` fixture that fills it."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_nvme_ai.core.ab_protocol import AbPlan
from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.text import safe_name
from pytest_nvme_ai.core.profiles import Profile
from pytest_nvme_ai.core.results import Verdict
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.gate.verdict import Comparison

RECORD_KEY = pytest.StashKey["TestRecord"]()


@dataclass
class TestRecord:
    """One measured test, filled while it runs (mutable on purpose: metrics arrive one by one)."""

    nodeid: str
    key: str                    # baseline key: nodeid without the target component
    suite: str
    target: Target | None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)   # label -> path relative to the run dir
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outcome: str = "not run"
    longrepr: str | None = None
    duration: float = 0.0
    comparisons: list[Comparison] = field(default_factory=list)
    baseline_file: str | None = None
    verdict: Verdict | None = None
    gated_metrics: tuple[str, ...] | None = None               # from the marker's metrics=
    tolerance: float = 10.0
    ab: dict[str, Any] | None = None                           # A/B in one session (run/ab.py), results.json `ab`

    def to_dict(self) -> dict[str, Any]:
        base = None
        if self.comparisons:
            base = {
                "file": self.baseline_file,
                "metrics": {c.metric: c.to_dict() for c in self.comparisons},
            }
        return {
            "nodeid": self.nodeid,
            "key": self.key,
            "suite": self.suite,
            "params": jsonable(self.params),
            "target": str(self.target.path) if self.target else None,
            "target_label": self.target.label if self.target else None,
            "outcome": self.outcome,
            "longrepr": self.longrepr,
            "duration": self.duration,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "baseline": base,
            "verdict": self.verdict,
            "tolerance": self.tolerance,
            "ab": self.ab,
            "artifacts": self.artifacts,
            "extra": jsonable(self.extra),
            "notes": self.notes,
        }


def jsonable(v: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(v) and not isinstance(v, type):
        return jsonable(asdict(v))
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


class SessionRecorder:
    """The `nvme_ai` fixture: what a test uses to record metrics, params and artifacts.

    Implements `core.recorder.Recorder`. It is handed the session's values rather than the session, so
    this module does not import `run.session` back (the session creates one per test)."""

    def __init__(self, record: TestRecord, *, config: pytest.Config, profile: Profile, repeat: int,
                 timeout: int | None, run_dir: Callable[[], Path], cache: SessionCache, aio: str,
                 children: ChildRegistry | None = None, engine_reuse: bool = True, fork_workers: bool = True,
                 ab: AbPlan | None = None) -> None:
        self._record = record
        self._config = config
        self._profile = profile
        self._repeat = repeat
        self._timeout = timeout
        self._run_dir = run_dir      # created on first use: a run that records nothing leaves no directory
        self._cache = cache
        self._aio = aio
        self._children = children if children is not None else ChildRegistry()
        self._engine_reuse = engine_reuse
        self._fork_workers = fork_workers
        self._ab = ab

    @property
    def nodeid(self) -> str:
        return self._record.nodeid

    @property
    def config(self) -> pytest.Config:
        return self._config

    @property
    def target(self) -> Target | None:
        return self._record.target

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def repeat(self) -> int:
        return self._repeat

    @property
    def timeout(self) -> int:
        return self._timeout or self.profile.child_timeout_s

    @property
    def tolerance(self) -> float:
        return self._record.tolerance

    @property
    def children(self) -> ChildRegistry:
        return self._children

    @property
    def artifact_dir(self) -> Path:
        d = self._run_dir() / "artifacts" / safe_name(self._record.nodeid)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def record(self, metric: Metric) -> Metric:
        """Record (or add samples to) a metric of this test."""
        prev = self._record.metrics.get(metric.name)
        merged = prev.merged(metric) if prev else metric
        self._record.metrics[metric.name] = merged
        return merged

    def record_samples(self, name: str, samples: list[float] | tuple[float, ...], **kw: Any) -> Metric:
        return self.record(Metric.of(name, samples, **kw))

    def ungate(self, name: str) -> None:
        """Keep a recorded metric in the report but out of the gate (e.g. a point that never reached steady
        state: comparing it as if steady would gate noise)."""
        m = self._record.metrics[name]
        self._record.metrics[name] = Metric(m.name, m.unit, m.better, m.samples, gated=False)

    def set_params(self, **params: Any) -> None:
        self._record.params.update(params)

    def set_extra(self, key: str, value: Any) -> None:
        self._record.extra[key] = value

    def note(self, text: str) -> None:
        self._record.notes.append(text)

    def add_artifact(self, label: str, path: Path | str) -> str:
        """Keep a file with the run (copied into the run dir when it lives elsewhere); returns its relative path."""
        p = Path(path)
        run_dir = self._run_dir().resolve()
        if run_dir not in p.resolve().parents:
            dest = self.artifact_dir / p.name
            shutil.copyfile(p, dest)
            p = dest
        rel = os.path.relpath(p.resolve(), run_dir)
        self._record.artifacts[label] = rel
        return rel

    def metrics(self) -> dict[str, Metric]:
        return dict(self._record.metrics)

    @property
    def session_cache(self) -> SessionCache:
        return self._cache

    @property
    def aio_setting(self) -> str:
        return self._aio

    @property
    def engine_reuse(self) -> bool:
        """--nvme-ai-engine-reuse: ZeRO-Inference cases that share an engine share one worker."""
        return self._engine_reuse

    @property
    def ab(self) -> AbPlan | None:
        """A/B in one session (core.ab_protocol): the pairs' scheduler and the read cap; None when neither is on."""
        return self._ab

    @property
    def fork_workers(self) -> bool:
        """--nvme-ai-fork-workers: CPU inference workers are forked from a server that imported once."""
        return self._fork_workers


