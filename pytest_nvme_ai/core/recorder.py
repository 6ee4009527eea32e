"""What a measurement may ask of the test it runs in: the `nvme_ai` fixture's contract.

Runners in `measure/` type against this protocol, so they never import the pytest session
(`run/`) that implements it; tests can hand a runner a small fake with the same attributes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import Profile
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
