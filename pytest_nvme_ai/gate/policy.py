"""The whole gate decision: which baseline a target is gated against (its own, else a sibling drive's),
which metrics are gated, which tolerance applies, whether the baseline is comparable at all, the verdict,
what fails the test (a regression; an incomparable baseline under --nvme-ai-strict) and what only warns
(an improvement), `unknown` (passes; fails under --nvme-ai-strict), the "error" verdict of a test that failed otherwise, and which sessions a
--nvme-ai-save-baseline keeps. The session hands over plain data and acts on what comes back; nothing of
this policy lives in run/ or plugin.py.

Precedence of the tolerance (percent everywhere): the marker's metric_tolerance={name: PCT} for that
metric > the marker's tolerance=PCT > the run's --nvme-ai-tolerance (CLI > env > ini > 10).
Gated metrics: the marker's metrics=[...] (a single string is one name), else each metric's own
flag (the catalog's default: tails and byte counts are report-only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.results import Verdict
from pytest_nvme_ai.gate.baseline import BaselineEntry, BaselineFile, find_sibling, load
from pytest_nvme_ai.gate.verdict import Comparison, compare, describe_fingerprint_change, overall
from pytest_nvme_ai.gate.window import MIN_SESSIONS, stats


class GateSettingError(ValueError):
    """A bad gate setting in a marker; the message names the test."""


def parse_percent(v: Any) -> float:
    """A tolerance in percent ('10', '10%', 10.0); the one parser for CLI, env, ini and markers."""
    x = float(str(v).strip().rstrip("%"))
    if not 0 < x < 1000:
        raise ValueError(f"tolerance {v!r} must be a percentage above 0, e.g. 10 for 10%")
    return x


@dataclass(frozen=True)
class GateRules:
    """What the marker and the run say about gating one test."""

    tolerance_pct: float
    gated_metrics: tuple[str, ...] | None = None
    metric_tolerance: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_marker(cls, marker: Mapping[str, Any], run_tolerance_pct: float, nodeid: str) -> "GateRules":
        def pct(what: str, value: Any) -> float:
            try:
                return parse_percent(value)
            except (TypeError, ValueError) as exc:
                raise GateSettingError(f"pytest-nvme-ai: bad {what}={value!r} in the nvme_ai marker of {nodeid}: "
                                       f"{exc}") from None

        tol = pct("tolerance", marker["tolerance"]) if "tolerance" in marker else float(run_tolerance_pct)
        metrics = marker.get("metrics")
        if isinstance(metrics, str):
            metrics = (metrics,)  # nvme_ai(metrics="bw") means the one metric, not the letters b and w
        per = marker.get("metric_tolerance") or {}
        if not isinstance(per, Mapping):
            raise GateSettingError(f"pytest-nvme-ai: metric_tolerance in the nvme_ai marker of {nodeid} must be "
                                   f"a dict {{metric: percent}}, not {per!r}")
        return cls(tol, tuple(metrics) if metrics else None,
                   {str(k): pct(f"metric_tolerance[{k!r}]", v) for k, v in per.items()})

    def tolerance_for(self, name: str) -> float:
        return self.metric_tolerance.get(name, self.tolerance_pct)

    def is_gated(self, m: Metric) -> bool:
        return (m.name in self.gated_metrics) if self.gated_metrics is not None else m.gated


@dataclass(frozen=True)
class GateSubject:
    """What the gate needs of a measured test (plain data: gate/ does not know the pytest session)."""

    key: str
    nodeid: str
    metrics: Mapping[str, Metric]
    params: Mapping[str, Any]          # JSON-able, as they will be saved
    profile: str
    fingerprint: Mapping[str, Any] | None


@dataclass(frozen=True)
class GateVerdict:
    comparisons: tuple[Comparison, ...]
    verdict: Verdict | None
    baseline_file: str | None

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.gated and c.verdict == "regression"]

    @property
    def improvements(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.gated and c.verdict == "improvement"]

    @property
    def incomparable(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.gated and c.verdict == "incomparable"]

    @property
    def unknown(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.gated and c.verdict == "unknown"]

    def failure(self) -> str | None:
        """The text that fails the test, or None when it passes the gate."""
        if not self.regressions:
            return None
        return "\n".join(c.message for c in self.regressions) + f"\nbaseline file: {self.baseline_file}"

    def enforce(self, *, strict: bool) -> "GateAction":
        """What the verdict does to the test: a regression fails it; otherwise each improvement warns
        (the baseline is stale) and, with --nvme-ai-strict, an incomparable baseline fails it."""
        failure = self.failure()
        if failure:
            return GateAction(failure, ())
        warnings = tuple(c.message + " — refresh the baseline with --nvme-ai-save-baseline" for c in self.improvements)
        if strict and self.incomparable:
            return GateAction(self.incomparable[0].message + " (--nvme-ai-strict)", warnings)
        if strict and self.unknown:
            return GateAction("\n".join(c.message for c in self.unknown)
                              + "\n(--nvme-ai-strict: a check that cannot see a change of the tolerance's size fails)",
                              warnings)
        return GateAction(None, warnings)

    def properties(self) -> list[tuple[str, Any]]:
        """The JUnit XML properties of the test (`nvme_ai.<metric>`, its verdict, its minimum detectable change)."""
        out: list[tuple[str, Any]] = []
        for c in self.comparisons:
            out.append((f"nvme_ai.{c.metric}", c.now))
            out.append((f"nvme_ai.{c.metric}.verdict", c.verdict))
            if c.baseline is not None:   # what CI dashboards show next to a failure: baseline, delta, tolerance
                out.append((f"nvme_ai.{c.metric}.baseline", c.baseline))
            if c.delta is not None:
                out.append((f"nvme_ai.{c.metric}.delta_pct", round(c.delta * 100, 2)))
            out.append((f"nvme_ai.{c.metric}.tolerance_pct", c.tolerance))
            out.append((f"nvme_ai.{c.metric}.unit", c.unit))
            if c.min_detectable_change is not None:
                out.append((f"nvme_ai.{c.metric}.min_detectable_change_pct", round(c.min_detectable_change, 2)))
        if self.verdict:
            out.append(("nvme_ai.verdict", self.verdict))
        return out


AB_TO_VERDICT: Mapping[str, Verdict] = {"worse": "regression", "better": "improvement", "same": "pass",
                                        "unknown": "unknown"}


@dataclass(frozen=True)
class AbGate:
    """What an A/B test's decisions (results.json `tests[].ab`, run/ab.py) do to it: `worse` fails it with the
    metric, ratio, interval, tolerance and pairs named; `better` warns; `unknown` passes (yellow), and fails
    under --nvme-ai-strict; `same` passes. Same interface as GateVerdict for the plugin."""

    doc: Mapping[str, Any]
    verdict: Verdict

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> "AbGate":
        return cls(doc, AB_TO_VERDICT.get(str(doc.get("verdict")), "unknown"))

    def _checks(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        """(point label, metric, decision dict) of every decided metric."""
        return [(str(p.get("label") or ""), name, d) for p in self.doc.get("points") or []
                for name, d in (p.get("metrics") or {}).items()]

    def _message(self, label: str, name: str, d: Mapping[str, Any]) -> str:
        ratio, ivl = d.get("ratio"), list(d.get("interval") or [None, None])
        hi = "inf" if ivl[1] is None else f"{ivl[1]:.3f}"
        where = f" [{label}]" if label else ""
        head = f"A/B {name}{where} {str(d.get('verdict')).upper()}"
        if ratio is None:
            return f"{head}: {d.get('stop_reason')}"
        return (f"{head}: B/A {ratio:.3f} (change {(ratio - 1) * 100:+.1f}%), {1 - float(d.get('alpha') or 0.05):.0%} "
                f"interval [{(ivl[0] or 0.0):.3f}, {hi}], tolerance ±{d.get('tolerance'):g}%, {d.get('pairs')} pairs "
                f"({d.get('better')} is better); {d.get('stop_reason')}; {self.doc.get('describe') or ''}".rstrip("; "))

    def failure(self) -> str | None:
        worse = [self._message(*c) for c in self._checks() if c[2].get("verdict") == "worse"]
        return "\n".join(worse) if worse else None

    def enforce(self, *, strict: bool) -> GateAction:
        failure = self.failure()
        if failure:
            return GateAction(failure, ())
        checks = self._checks()
        better = tuple(self._message(*c) for c in checks if c[2].get("verdict") == "better")
        unknown = [self._message(*c) for c in checks if c[2].get("verdict") == "unknown"]
        if strict and (unknown or self.verdict == "unknown"):
            return GateAction("\n".join(unknown or ["A/B: no gated metric could be decided"])
                              + "\n(--nvme-ai-strict: an A/B comparison that stays unknown fails)", better)
        return GateAction(None, better)

    def properties(self) -> list[tuple[str, Any]]:
        """JUnit properties: per metric its ratio, interval and verdict; the test's A/B and overall verdict."""
        out: list[tuple[str, Any]] = []
        for label, name, d in self._checks():
            key = f"nvme_ai.ab.{name}" + (f".{label}" if label and len(self.doc.get("points") or []) > 1 else "")
            ivl = list(d.get("interval") or [None, None])
            out.append((f"{key}.ratio", None if d.get("ratio") is None else round(float(d["ratio"]), 4)))
            out.append((f"{key}.interval", f"[{ivl[0]}, {'inf' if ivl[1] is None else ivl[1]}]"))
            out.append((f"{key}.verdict", d.get("verdict")))
            out.append((f"{key}.pairs", d.get("pairs")))
        out.append(("nvme_ai.ab.verdict", self.doc.get("verdict")))
        if self.doc.get("series"):
            out.append(("nvme_ai.ab.series", self.doc["series"]))
        out.append(("nvme_ai.verdict", self.verdict))
        return out


@dataclass(frozen=True)
class GateAction:
    """What the gate does to a test whose body passed: fail it with `failure`, after warning `warnings`."""

    failure: str | None
    warnings: tuple[str, ...]


def final_verdict(outcome: str, verdict: Verdict | None) -> Verdict | None:
    """The test's verdict once pytest has its outcome: none for a skipped test; "error" for one that failed
    or errored for another reason than a regression (its figures, if any, were not what failed it)."""
    if outcome == "skipped":
        return None
    if outcome in ("failed", "error") and verdict != "regression":
        return "error"
    return verdict


@dataclass(frozen=True)
class BaselineChoice:
    """The baseline a target is gated against: its own file, else a sibling's (`sibling` says whose)."""

    file: BaselineFile | None
    sibling: str | None = None      # path of a sibling drive's baseline used in place of the own one

    @property
    def own(self) -> BaselineFile | None:
        return self.file if self.sibling is None else None


def choose_baseline(path: Path, baseline_dir: Path, fingerprint: Mapping[str, Any], *, named: bool) -> BaselineChoice:
    """The file at `path`; when there is none and no name was given, a baseline of the same drive model with
    other firmware or PCIe link, so that the change shows as 'incomparable' ('error' with --nvme-ai-strict)
    instead of silently starting over as 'new'. Raises baseline.BaselineError on a file it cannot read."""
    own = load(path)
    if own is not None or named:
        return BaselineChoice(own)
    sibling = find_sibling(baseline_dir, fingerprint)
    return BaselineChoice(sibling, str(sibling.path)) if sibling is not None else BaselineChoice(None)


# Params that a run records only when they differ from their default, so that older baselines (which never
# recorded them) stay comparable: a missing one means the default. t_io_bw_source: where the roofline's
# t_io bandwidth came from (suites/test_zero_inference.py; "deepspeed-aio" on a machine without fio).
DEFAULTED_PARAMS: Mapping[str, Any] = {"t_io_bw_source": "fio"}


def _changed_params(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """'key old -> new' for parameters both runs recorded with different values (e.g. the aio block), and
    for a defaulted param that one side recorded and the other left at its default."""
    o = {**{k: v for k, v in DEFAULTED_PARAMS.items() if k in new}, **old}
    n = {**{k: v for k, v in DEFAULTED_PARAMS.items() if k in old}, **new}
    return "; ".join(f"{k} {o[k]!r} -> {n[k]!r}" for k in sorted(set(o) & set(n)) if o[k] != n[k])


def incomparable_reason(test: GateSubject, bfile: BaselineFile | None, entry: BaselineEntry | None) -> str | None:
    """Why this baseline cannot gate this test, or None when it can."""
    if bfile is not None and test.fingerprint is not None and bfile.fingerprint != dict(test.fingerprint):
        return describe_fingerprint_change(bfile.fingerprint, test.fingerprint)
    if entry is None:
        return None
    if entry.profile not in (None, test.profile):
        return (f"the baseline was recorded with profile {entry.profile!r}, this run is {test.profile!r} "
                f"(other file sizes and durations); save a baseline for this profile")
    changed = _changed_params(entry.params, test.params)
    if changed:
        return f"the baseline was measured with other settings ({changed}); save a baseline for these settings"
    return None


def decide(test: GateSubject, rules: GateRules, bfile: BaselineFile | None, *, window: int) -> GateVerdict:
    """Compare every metric of the test with its baseline window; one verdict for the test."""
    entry = bfile.entries.get(test.key) if bfile is not None else None
    reason = incomparable_reason(test, bfile, entry)
    comps = []
    for name, m in test.metrics.items():
        base = entry.metrics.get(name) if entry is not None else None
        sessions = entry.points(name, window) if entry is not None else None
        comps.append(compare(m, base, tolerance_pct=rules.tolerance_for(name), gated=rules.is_gated(m),
                             incomparable=reason, sessions=sessions))
    return GateVerdict(tuple(comps), overall(comps),
                       str(bfile.path) if bfile is not None and entry is not None else None)


def window_warnings(bfile: BaselineFile, tolerance_pct: float, window: int) -> list[str]:
    """Header lines: gated metrics whose minimum detectable change exceeds the tolerance, and entries
    whose window is too short to know the drift. Uses the run's tolerance and the stored gated flags
    (a marker's own tolerance is applied in the test's verdict, where its MDC is shown too)."""
    blind: list[str] = []
    short = 0
    for key, e in sorted(bfile.entries.items()):
        for name, m in e.metrics.items():
            if not m.gated:
                continue
            w = stats(e.points(name, window), m.n)
            if w is None:
                short += 1
                continue
            if w.blind_to(m.better, tolerance_pct):
                blind.append(f"{key} {name}: drift between sessions ±{w.drift_pct:.1f}% over {w.k} sessions, "
                             f"prediction limit {w.limit_pct(m.better):.0f}%, minimum detectable change "
                             f"{w.mdc_pct(m.better, tolerance_pct):.0f}%")
    lines = [f"the gate cannot see a change of the tolerance's size (±{tolerance_pct:g}%) here, only changes "
             f"beyond the minimum detectable change: {b}; the fix is more repetitions (--nvme-ai-repeat), a longer "
             f"run (profile) or a quieter runner" for b in blind]
    if short:
        lines.append(f"{short} gated check(s) have fewer than {MIN_SESSIONS} sessions in their window: the drift "
                     f"between sessions is unknown, so the minimum detectable change is unknown and each is "
                     f"compared with its latest session only (save more sessions with --nvme-ai-save-baseline)")
    return lines


@dataclass(frozen=True)
class SavedCheck:
    """What `saveable` needs of one metric's comparison."""

    gated: bool
    verdict: str
    method: str
    window_sessions: int


@dataclass(frozen=True)
class SaveCandidate:
    """What `saveable` needs of a test: its pytest outcome, its verdict and its comparisons."""

    outcome: str
    verdict: str | None
    checks: tuple[SavedCheck, ...]

    @classmethod
    def of(cls, outcome: str, verdict: str | None, comparisons: Iterable[Comparison]) -> "SaveCandidate":
        """From the live comparisons of a test of this run."""
        return cls(outcome, verdict, tuple(SavedCheck(c.gated, c.verdict, c.method, c.window_sessions)
                                           for c in comparisons))

    @classmethod
    def from_results(cls, test: Mapping[str, Any]) -> "SaveCandidate":
        """From a results.json test record (`nvme-ai baseline promote`)."""
        comps: Sequence[Any] = list(((test.get("baseline") or {}).get("metrics") or {}).values())
        return cls(str(test.get("outcome") or ""), test.get("verdict"),
                   tuple(SavedCheck(bool(c.get("gated")), str(c.get("verdict") or ""), str(c.get("method") or ""),
                                    int(c.get("window_sessions") or 0)) for c in comps))


def saveable(test: SaveCandidate, window: int) -> bool:
    """Whether `--nvme-ai-save-baseline` adds this test's session to its window.

    A passing test is saved. So is a test whose only failure is a regression that the within-session rule
    found while its window was still too short to know the drift (every regressed gated comparison had
    fewer than MIN_SESSIONS sessions, and none used the session-window rule): that verdict compared three
    samples with three samples of one earlier session, and sessions on a drifting runner separate
    completely (the issue's unchanged rerun failed 3 of 17 tests). Leaving such sessions out would keep
    only the sessions that agreed with the first one, so the window would learn a drift smaller than the
    runner's and then cry wolf. A regression found against a window that knows its drift is evidence of a
    change and is not saved; nor is any regression when the configured window (`window`) can never reach
    MIN_SESSIONS, since the session-window rule would never take over. `nvme-ai baseline promote
    --include-failed` adds such a session after review."""
    if test.outcome == "passed":
        return True
    if test.verdict != "regression" or window < MIN_SESSIONS:
        return False
    gated = [c for c in test.checks if c.gated]
    regressed = [c for c in gated if c.verdict == "regression"]
    return (bool(regressed) and not any(c.method == "session-window" for c in gated)
            and all(c.window_sessions < MIN_SESSIONS for c in regressed))
