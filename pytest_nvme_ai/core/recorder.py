"""What a measurement may ask of the test it runs in: the `nvme_ai` fixture's contract.

Runners in `measure/` type against this protocol, so they never import the pytest session
(`run/`) that implements it; tests and benchmarks hand a runner a `MemoryRecorder` (below).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import PROFILES, Profile
from pytest_nvme_ai.core.targets import Target


class Recorder(Protocol):
    """Record metrics, params, extras, notes and artifacts of one test; read its settings."""

    @property
    def nodeid(self) -> str: ...

    @property
    def target(self) -> Target | None: ...

    @property
    def profile(self) -> Profile: ...

    @property
    def repeat(self) -> int: ...

    @property
    def timeout(self) -> int: ...

    @property
    def tolerance(self) -> float: ...

    @property
    def artifact_dir(self) -> Path: ...

    @property
    def session_cache(self) -> SessionCache: ...

    @property
    def aio_setting(self) -> str: ...

    @property
    def children(self) -> ChildRegistry: ...   # long-lived children register their closer; the session closes them

    def record(self, metric: Metric) -> Metric: ...

    def record_samples(self, name: str, samples: list[float] | tuple[float, ...], **kw: Any) -> Metric: ...

    def set_params(self, **params: Any) -> None: ...

    def set_extra(self, key: str, value: Any) -> None: ...

    def note(self, text: str) -> None: ...

    def add_artifact(self, label: str, path: Path | str) -> str: ...

    def metrics(self) -> dict[str, Metric]: ...

    def ungate(self, name: str) -> None: ...   # keep a metric in the report, out of the gate (e.g. not steady)


@dataclass
class MemoryRecorder:
    """The whole `Recorder` protocol, in memory: what tests and benchmarks hand a runner instead of the
    pytest session's recorder. Settings are plain attributes (a test sets `timeout = 2`); what is
    recorded is in `recorded`, `params`, `extra`, `notes` and `artifacts`, as the session would keep it
    (a metric recorded twice merges its samples, as SessionRecorder.record does)."""

    artifact_dir: Path
    nodeid: str = "tests/test_x.py::test_case"
    target: Target | None = None
    profile: Profile = field(default_factory=lambda: PROFILES["quick"])
    repeat: int = 3
    timeout: int = 300
    tolerance: float = 0.10
    aio_setting: str = "default"
    session_cache: SessionCache = field(default_factory=SessionCache)
    children: ChildRegistry = field(default_factory=ChildRegistry)
    recorded: dict[str, Metric] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)

    def record(self, metric: Metric) -> Metric:
        prev = self.recorded.get(metric.name)
        merged = prev.merged(metric) if prev else metric
        self.recorded[metric.name] = merged
        return merged

    def record_samples(self, name: str, samples: list[float] | tuple[float, ...], **kw: Any) -> Metric:
        return self.record(Metric.of(name, samples, **kw))

    def set_params(self, **params: Any) -> None:
        self.params.update(params)

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add_artifact(self, label: str, path: Path | str) -> str:
        """Kept where it is (no run directory to copy into); returns the path."""
        self.artifacts[label] = str(path)
        return str(path)

    def metrics(self) -> dict[str, Metric]:
        return dict(self.recorded)

    def ungate(self, name: str) -> None:
        m = self.recorded[name]
        self.recorded[name] = Metric(m.name, m.unit, m.better, m.samples, gated=False)
