"""`RunSettings`: every setting the session reads, resolved once at configure and frozen.

The declarations (option, ini key, env var, parser) stay in the sibling modules; this is their one
reader for the session, so a bad value stops the run at configure with the name of its source, and
nothing later re-reads the command line. Settings that only a suite or a fixture reads (qualification
knobs, the fio client) are still read where they are used, with `settings.resolve(config, name)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_nvme_ai.core.arms import ArmError, ArmOverrides, parse_ab
from pytest_nvme_ai.core.profiles import PROFILES, Profile
# The package module, not names from it: this module is imported while the package collects its
# declarations (settings/__init__.py's submodules()), before `resolve` exists; its attributes are read at call time.
from pytest_nvme_ai.run import settings as s

DEFAULT_HISTORY_FILE = "history.sqlite"


@dataclass(frozen=True)
class StoreChoice:
    """Where the run history goes (--nvme-ai-history), decided at configure."""

    url: str | None          # None: turned off
    source: str              # where the choice came from, for messages
    embedded: bool           # the default SQLite file beside the reports


@dataclass(frozen=True)
class RunSettings:
    profile_name: str
    tolerance: float
    baseline_window: int
    repeat: int | None
    timeout: int | None
    save_baseline: bool
    strict: bool
    baseline_name: str | None
    aio: str
    engine_reuse: bool
    fork_workers: bool
    report_dir: Path
    baseline_dir: Path
    benchmark_json: Path | None
    targets: tuple[str, ...]          # as given; empty: the embedded default target
    history: StoreChoice
    argv: tuple[str, ...]             # the invocation's arguments, unredacted: redact where recorded
    collect_only: bool
    ab: ArmOverrides | None = None    # --nvme-ai-ab: arm A's overrides; None: no A/B
    ab_budget: float | None = None    # --nvme-ai-ab-budget seconds per test; None: the profile's
    read_cap: float | None = None     # --nvme-ai-read-cap fraction (arm B only in A/B mode)
    ab_order: str = "random"          # --nvme-ai-ab-order: random | abba

    @property
    def profile(self) -> Profile:
        return PROFILES[self.profile_name]

    @property
    def ab_budget_s(self) -> float:
        return self.ab_budget if self.ab_budget is not None else self.profile.ab_budget_s


def run_settings(config: pytest.Config) -> RunSettings:
    """Resolve every session setting now (CLI > env > ini > default); a bad one raises SettingError."""
    report_dir = s.resolve_path(config, "report_dir")
    baseline_dir = s.resolve_path(config, "baseline_dir")
    assert report_dir is not None and baseline_dir is not None   # both have defaults
    return RunSettings(
        profile_name=s.resolve(config, "profile"), tolerance=s.resolve(config, "tolerance"),
        baseline_window=s.resolve(config, "baseline_window"), repeat=s.resolve(config, "repeat"),
        timeout=s.resolve(config, "timeout"), save_baseline=bool(s.resolve(config, "save_baseline")),
        strict=bool(s.resolve(config, "strict")), baseline_name=s.resolve(config, "baseline_name"),
        aio=s.resolve(config, "aio"), engine_reuse=bool(s.resolve(config, "engine_reuse")),
        fork_workers=bool(s.resolve(config, "fork_workers")), report_dir=report_dir, baseline_dir=baseline_dir,
        benchmark_json=s.resolve_path(config, "benchmark_json"), targets=tuple(s.resolve(config, "target")),
        history=store_choice(config, report_dir), argv=tuple(str(a) for a in config.invocation_params.args),
        collect_only=bool(config.option.collectonly), ab=ab_overrides(config), ab_budget=s.resolve(config, "ab_budget"),
        read_cap=s.resolve(config, "read_cap"), ab_order=s.resolve(config, "ab_order"),
    )


def ab_overrides(config: pytest.Config) -> ArmOverrides | None:
    """--nvme-ai-ab's values together (each was checked alone by its parser): same twice, same with overrides."""
    values = s.resolve(config, "ab")
    if not values:
        return None
    source = s.source_of(config, "ab")
    try:
        return parse_ab(values, source=f"pytest-nvme-ai: {source}")
    except ArmError as exc:
        raise s.SettingError(str(exc)) from None


def store_choice(config: pytest.Config, report_dir: Path) -> StoreChoice:
    raw = s.resolve(config, "history")
    if raw is None:
        return StoreChoice(str(report_dir / DEFAULT_HISTORY_FILE), "default (beside the reports)", True)
    value = str(raw).strip()
    if value.lower() == "none":
        return StoreChoice(None, "--nvme-ai-history none", False)
    if "://" in value:
        return StoreChoice(value, "--nvme-ai-history", False)
    path = s.resolve_path(config, "history")  # relative to where it was given, like every path setting
    return StoreChoice(str(path), "--nvme-ai-history", False)
