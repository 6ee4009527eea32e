"""A/B in one session (issue 23): the run's arms, and the pairs of each test, scheduled and decided.

`RunAb` is the session's part: arm A's overrides (`--nvme-ai-ab`), arm B's read cap (`--nvme-ai-read-cap`),
the budget per test, the order of the arms within each pair, and arm A's own target (`target=DIR`: a
private directory inside DIR, validated like a target, removed at the end). `TestAb` is one test's
`core.ab_protocol.AbPlan`, handed to runners through the recorder's `ab` property: `measure_pairs` runs
pairs of one repetition per arm, the order within each pair randomized from a recorded seed (or ABBA
blocks, `--nvme-ai-ab-order abba`), decides after each pair per gated metric with gate/ab.py's confidence
sequence on log(B/A), and stops when every gated metric is final (same, worse, better) or the budget is
spent (unknown, with the interval reached and about how many pairs would decide). Everything is written
into the test's record (results.json `tests[].ab`); the gate (gate.policy.AbGate) turns the verdict into
the test's outcome: worse fails it, unknown passes (yellow) unless --nvme-ai-strict.
"""
from __future__ import annotations

import hashlib
import math
import random
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from pytest_nvme_ai.core.ab_protocol import ARMS, AbOutcome, Arm, MeasureOnce, Pair
from pytest_nvme_ai.core.arms import ArmOverrides, series_key
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.targets import Target, TargetError, validate_target_dir
from pytest_nvme_ai.gate.ab import AbRule, PairDecision, decide, log_ratios
from pytest_nvme_ai.gate.policy import GateRules

Order = Literal["random", "abba"]
MAX_PAIRS = 500                  # a safety net: the time budget decides long before this on any real measurement
VERDICT_RANK = {"worse": 3, "better": 2, "unknown": 1, "same": 0}


class AbSetupError(ValueError):
    """Arm A cannot be set up (its target is not a usable directory): the run stops at start."""


@dataclass
class RunAb:
    """The session's A/B settings and arm A's target; one per session."""

    overrides: ArmOverrides | None
    read_cap: float | None
    budget_s: float
    order: Order = "random"
    arm_a_target: Target | None = None

    @property
    def enabled(self) -> bool:
        return self.overrides is not None

    @property
    def active(self) -> bool:
        """Anything for runners to do: pairs, or a read cap alone."""
        return self.overrides is not None or self.read_cap is not None

    @property
    def series(self) -> str | None:
        return series_key(self.overrides, self.read_cap) if self.overrides is not None else None

    def setup(self, run_id: str, identify: Callable[[Any], Any]) -> None:
        """Validate arm A's target (like --nvme-ai-target) and give it a private directory of this run."""
        ov = self.overrides
        if ov is None:
            return
        for key, exe in (("fio", ov.fio), ("python", ov.python)):
            if exe is not None and shutil.which(exe) is None:
                raise AbSetupError(f"pytest-nvme-ai: --nvme-ai-ab {key}={exe}: not an executable file; give the path "
                                   f"of another {'fio binary' if key == 'fio' else 'interpreter (its venv/bin/python)'}")
        if ov.target is None:
            return
        try:
            where = validate_target_dir(ov.target)
        except TargetError as exc:
            raise AbSetupError(f"pytest-nvme-ai: --nvme-ai-ab target={ov.target}: {exc}") from None
        self.arm_a_target = Target(path=where, label="ab-arm-a", run_id=run_id, device=identify(where))

    def release(self) -> None:
        if self.arm_a_target is not None:
            self.arm_a_target.cleanup()

    def describe(self) -> list[str]:
        """Header lines."""
        lines = []
        if self.overrides is not None:
            lines.append(f"nvme-ai A/B: arm B = the run as configured"
                         f"{f' with reads capped at {self.read_cap:g} of the measured bandwidth' if self.read_cap else ''}"
                         f"; arm A = {self.overrides.describe()}; order {self.order}, budget {self.budget_s:g} s per "
                         f"test; series {self.series}")
            if self.arm_a_target is not None:
                lines.append(f"nvme-ai A/B arm A target: {self.arm_a_target.path}")
        elif self.read_cap is not None:
            lines.append(f"nvme-ai read cap: reads capped at {self.read_cap:g} of the target's fio bandwidth "
                         f"measured just before each capped measurement")
        return lines

    def for_test(self, record: Any, rules: GateRules, seed_text: str) -> "TestAb":
        return TestAb(self, record, rules, seed_text)


def seed_of(text: str) -> int:
    """A seed from the run id and the test: reproducible from results.json, different per test."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def pair_order(i: int, mode: Order, rng: random.Random) -> tuple[Arm, Arm]:
    """Pair i's order: a fair coin per pair (random), or AB, BA, AB, BA... (ABBA blocks)."""
    if mode == "abba":
        return ("A", "B") if i % 2 == 0 else ("B", "A")
    return ("A", "B") if rng.random() < 0.5 else ("B", "A")


class TestAb:
    """One test's `core.ab_protocol.AbPlan`."""

    __test__ = False   # not a pytest test class

    def __init__(self, run: RunAb, record: Any, rules: GateRules, seed_text: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.run = run
        self.record = record            # run.records.TestRecord: `ab` and `gated_metrics` are read/written
        self.rules = rules
        self.seed = seed_of(seed_text)
        self.clock = clock

    @property
    def overrides(self) -> ArmOverrides | None:
        return self.run.overrides

    @property
    def read_cap(self) -> float | None:
        return self.run.read_cap

    @property
    def arm_a_target(self) -> Target | None:
        return self.run.arm_a_target

    def rule_for(self, name: str, better: str) -> AbRule:
        return AbRule("higher" if better == "higher" else "lower", tolerance=min(self.rules.tolerance_for(name), 99.0))

    def gated(self, values: Mapping[str, float]) -> dict[str, Metric]:
        """The metrics the pairs decide: the marker's metrics=, else the catalog's gated flag."""
        out = {}
        for name, v in values.items():
            m = Metric.of(name, [v]) if _known(name) else None
            if m is None:
                continue
            if self.rules.is_gated(m):
                out[name] = m
        return out

    def measure_pairs(self, measure_once: MeasureOnce, *, arms: Mapping[Arm, Mapping[str, Any]],
                      label: str = "") -> AbOutcome:
        budget = self.run.budget_s
        rng = random.Random(self.seed)
        t0 = self.clock()
        pairs: list[Pair] = []
        decisions: dict[str, PairDecision | str] = {}
        gated: dict[str, Metric] = {}
        while True:
            order = pair_order(len(pairs), self.run.order, rng)
            values: dict[Arm, Mapping[str, float]] = {}
            started: dict[Arm, float] = {}
            seconds: dict[Arm, float] = {}
            for arm in order:
                started[arm] = self.clock()
                values[arm] = dict(measure_once(arm))
                seconds[arm] = self.clock() - started[arm]
            pairs.append(Pair(len(pairs) + 1, order, values, started, seconds))
            if not gated:
                gated = self.gated(pairs[0].values["B"])
            elapsed = self.clock() - t0
            n = len(pairs)
            out_of_budget = n >= MAX_PAIRS or elapsed + elapsed / n > budget
            decisions = {name: self._decide(name, m.better, pairs, out_of_budget) for name, m in gated.items()}
            if not gated or all(isinstance(d, str) or d.final for d in decisions.values()):
                break
        wall = self.clock() - t0
        return self._finish(pairs, decisions, arms, label, wall, budget)

    def _decide(self, name: str, better: str, pairs: list[Pair], out_of_budget: bool) -> PairDecision | str:
        """The decision so far, or why this metric cannot be decided as a ratio (a str, final)."""
        try:
            a = [p.values["A"][name] for p in pairs]
            b = [p.values["B"][name] for p in pairs]
            x = log_ratios(a, b)
        except (KeyError, ValueError) as exc:
            return f"{name}: not decided: {exc if not isinstance(exc, KeyError) else 'an arm did not measure it'}"
        return decide(x, self.rule_for(name, better), out_of_budget=out_of_budget)

    def _finish(self, pairs: list[Pair], decisions: Mapping[str, PairDecision | str],
                arms: Mapping[Arm, Mapping[str, Any]], label: str, wall: float, budget: float) -> AbOutcome:
        docs: dict[str, dict[str, Any]] = {}
        for name, d in decisions.items():
            docs[name] = ({"verdict": "unknown", "stop_reason": d, "pairs": len(pairs)} if isinstance(d, str)
                          else d.to_dict())
        verdict = overall([str(d["verdict"]) for d in docs.values()])
        reasons = [f"{n}: {d['verdict']} ({d['stop_reason']})" for n, d in docs.items()]
        stop = ("every gated metric decided" if verdict != "unknown" else "budget spent") if docs else \
            "no gated metric to decide"
        point = {"label": label, "verdict": verdict, "stop_reason": stop, "pairs_used": len(pairs),
                 "wall_s": round(wall, 3), "budget_s": budget, "metrics": docs,
                 "pairs": [p.to_dict() for p in pairs], "reasons": reasons}
        self._store(point, arms)
        return AbOutcome(tuple(pairs), verdict, docs, stop)

    def _store(self, point: dict[str, Any], arms: Mapping[Arm, Mapping[str, Any]]) -> None:
        """The test's results.json `ab`: the arms, every point's pairs and decisions, the overall verdict."""
        ov = self.run.overrides
        doc = self.record.ab or {
            "arm_a": ov.to_dict() if ov is not None else None, "describe": ov.describe() if ov is not None else None,
            "series": self.run.series, "read_cap_b": self.run.read_cap, "order": self.run.order,
            "seed": self.seed, "method": "mixture-t confidence sequence on log(B/A)", "arms": {}, "points": []}
        doc["arms"] = {a: dict(arms.get(a, {})) for a in ARMS}
        doc["points"] = [*doc["points"], point]
        doc["verdict"] = overall([p["verdict"] for p in doc["points"]])
        # One point (the common case): its figures at the top too, as the contract reads them.
        for key in ("metrics", "stop_reason", "pairs_used", "wall_s", "budget_s", "pairs"):
            doc[key] = point[key] if len(doc["points"]) == 1 else None
        self.record.ab = doc


def _known(name: str) -> bool:
    try:
        Metric.of(name, [1.0])
    except (KeyError, ValueError):
        return False
    return True


def overall(verdicts: list[str]) -> str:
    """The test's A/B verdict: worse over better over unknown over same (a test with none: unknown)."""
    if not verdicts:
        return "unknown"
    return max(verdicts, key=lambda v: VERDICT_RANK.get(v, 1))


def ab_ratio_text(d: Mapping[str, Any]) -> str:
    """'0.512 [0.47, 0.55]' from a decision dict (results.json), 'inf' for an unbounded end."""
    ratio = d.get("ratio")
    lo, hi = (list(d.get("interval") or [None, None]) + [None, None])[:2]

    def f(v: Any) -> str:
        return "inf" if v is None else f"{float(v):.3f}"

    return "-" if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)) else \
        f"{float(ratio):.3f} [{0.0 if lo is None else float(lo):.3f}, {f(hi)}]"
