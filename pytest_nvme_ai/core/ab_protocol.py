"""What a runner in measure/ may ask of the A/B machinery (issue 23), without importing run/.

The session (run/ab.py) implements `AbPlan` per test and hands it over as the recorder's `ab` property
(None when the run is neither A/B nor read-capped). A runner that supports A/B:

    plan = recorder.ab if isinstance(recorder, AbRecorder) else None
    if plan is not None and plan.overrides is not None:
        outcome = plan.measure_pairs(measure_once, arms={"A": spec_a, "B": spec_b}, label="bs1M")

`measure_once(arm)` runs ONE repetition of the measured point under that arm (its own target, binary,
environment; arm B with the read cap) and returns the metric values by name. The plan schedules the
pairs (order per pair randomized with a recorded seed, or ABBA), decides after each pair per gated metric
(gate/ab.py), stops when every gated metric is final or the budget is spent, records everything in the
test's `ab` record, and returns the pairs so the runner can record arm B's values as the test's metrics.

ZeRO-Inference / training runners plug in the same way: their `measure_once` runs one measured loop set
of a warm worker per arm (arm A's worker under `python=`/`env:`; arm B's inside its capped cgroup).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, runtime_checkable

from pytest_nvme_ai.core.arms import ArmOverrides
from pytest_nvme_ai.core.targets import Target

Arm = Literal["A", "B"]
ARMS: tuple[Arm, Arm] = ("A", "B")
MeasureOnce = Callable[[Arm], Mapping[str, float]]


@dataclass(frozen=True)
class Pair:
    """One pair: a run of each arm, in `order`, with what each returned and when it started (epoch s)."""

    index: int
    order: tuple[Arm, Arm]
    values: Mapping[Arm, Mapping[str, float]]
    started: Mapping[Arm, float]
    seconds: Mapping[Arm, float]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "order": "".join(self.order),
                "values": {a: dict(self.values[a]) for a in ARMS},
                "started": {a: round(self.started[a], 3) for a in ARMS},
                "seconds": {a: round(self.seconds[a], 3) for a in ARMS}}


@dataclass(frozen=True)
class AbOutcome:
    """What `measure_pairs` returns: the pairs, and per gated metric the final decision's dict (gate/ab.py)."""

    pairs: tuple[Pair, ...]
    verdict: str                                   # same | worse | better | unknown (worst over gated metrics)
    decisions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stop_reason: str = ""

    def samples(self, arm: Arm, name: str) -> list[float]:
        """One value per pair of `arm` for `name` (pairs where the arm measured it)."""
        return [p.values[arm][name] for p in self.pairs if name in p.values[arm]]


class AbPlan(Protocol):
    """The A/B machinery of one test."""

    @property
    def overrides(self) -> ArmOverrides | None: ...          # arm A's overrides; None: not A/B (read cap alone)

    @property
    def read_cap(self) -> float | None: ...                  # fraction of the measured bandwidth (arm B / the run)

    @property
    def arm_a_target(self) -> Target | None: ...             # target=DIR's private directory (validated), else None

    def measure_pairs(self, measure_once: MeasureOnce, *, arms: Mapping[Arm, Mapping[str, Any]],
                      label: str = "") -> AbOutcome: ...


@runtime_checkable
class AbRecorder(Protocol):
    """A recorder that carries the A/B plan (run.records.SessionRecorder). The one-line addition this asks of
    core.recorder.Recorder, once its owner takes it: `@property\\n    def ab(self) -> AbPlan | None: ...`"""

    @property
    def ab(self) -> AbPlan | None: ...


def plan_of(recorder: object) -> AbPlan | None:
    """The recorder's A/B plan, or None (a recorder without one, e.g. a test's fake)."""
    return recorder.ab if isinstance(recorder, AbRecorder) else None
