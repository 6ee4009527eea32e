"""Recording one run into its test, the same way for every workload runner (pytest side)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, NoReturn, Protocol

import pytest

from pytest_nvme_ai.core.extras import InferenceExtra
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.measure.deepspeed.errors import SpecNotApplicable

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder


def prefixed(metric: Metric, prefix: str) -> Metric:
    """The same metric under `<prefix>_<name>` (pairing tests record two runs in one test)."""
    return Metric(f"{prefix}_{metric.name}", metric.unit, metric.better, metric.samples, metric.gated)


def record_params(rec: Recorder, params: Mapping[str, Any], prefix: str | None) -> None:
    """The run's params: the test's own, or the `<prefix>_params` extra for one run among several."""
    if prefix:
        rec.set_extra(f"{prefix}_params", dict(params))
    else:
        rec.set_params(**params)


def record_extras(rec: Recorder, items: Iterable[tuple[str, Any]], prefix: str | None) -> None:
    for key, value in items:
        rec.set_extra(InferenceExtra.key(prefix, key), value)


def record_metrics(rec: Recorder, metrics: Iterable[Metric], prefix: str | None) -> None:
    for metric in metrics:
        rec.record(prefixed(metric, prefix) if prefix else metric)


class Validating(Protocol):
    def validate(self, accelerator: str = "cpu") -> None: ...


def not_applicable(rec: Recorder, prefix: str | None, reason: str) -> NoReturn:
    """Skip the test with `reason`, saying so in the run's outcome extra (the report shows why)."""
    rec.set_extra(InferenceExtra.key(prefix, InferenceExtra.RUN_OUTCOME), "not_applicable")
    pytest.skip(reason)


def validate_or_skip(spec: Validating, accelerator: str, rec: Recorder, prefix: str | None) -> None:
    """SpecError (a wrong spec) fails the test; SpecNotApplicable (this machine cannot run it) skips it."""
    try:
        spec.validate(accelerator)
    except SpecNotApplicable as exc:
        not_applicable(rec, prefix, str(exc))
