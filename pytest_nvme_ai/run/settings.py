"""Every setting defined once: CLI option, ini key, env var, help text, parser.

Precedence (highest first), as pytest-timeout documents it:
    nvme_ai marker (per test, where the setting allows)  >  command line
    >  environment variable NVME_AI_*  >  ini key nvme_ai_*  >  profile / default
Errors name where the bad value came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_nvme_ai.core.profiles import PROFILES  # one source of the profile names


@dataclass(frozen=True)
class Setting:
    name: str            # attribute name, e.g. "tolerance"
    help: str
    parse: Callable[[str], Any]
    default: Any
    kind: str = "value"  # value | list | flag
    metavar: str | None = None
    env: bool = True

    @property
    def option(self) -> str:
        return "--nvme-ai-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "nvme_ai_" + self.name

    @property
    def envvar(self) -> str:
        return "NVME_AI_" + self.name.upper()


class SettingError(pytest.UsageError):
    pass


def _profile(v: str) -> str:
    if v not in PROFILES:
        raise ValueError(f"unknown profile {v!r}; choose one of {', '.join(PROFILES)}")
    return v


def _percent(v: str) -> float:
    x = float(str(v).rstrip("%"))
    if not 0 < x < 1000:
        raise ValueError(f"tolerance {v!r} must be a percentage above 0, e.g. 10 for 10%")
    return x


def _positive_int(v: str) -> int:
    x = int(v)
    if x < 1:
        raise ValueError(f"{v!r} must be a whole number of at least 1")
    return x


def _bool(v: str) -> bool:
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{v!r} is not a boolean; use 1/0, true/false, yes/no")


def _str(v: str) -> str:
    return str(v)


def _name(v: str) -> str:
    """A baseline name becomes <baseline dir>/<name>.json: a name, never a path."""
    from pytest_nvme_ai.core.names import check_name

    name = check_name(str(v).strip(), "baseline name", "to keep baselines elsewhere, use --nvme-ai-baseline-dir")
    if name.endswith(".json"):
        raise ValueError(f"baseline name {name!r} ends in .json: give the name alone, the file is <baseline dir>/"
                         f"{name.removesuffix('.json')}.json")
    return name


def _aio(v: str) -> str:
    """'default', 'auto' or a JSON aio block, checked now so a typo stops the run before any test."""
    s = str(v).strip()
    if s not in ("default", "auto"):
        from pytest_nvme_ai.measure.zero_inference.ds_config import AioSettingError, parse_aio_json  # light: json + packaging

        try:
            parse_aio_json(s)
        except AioSettingError as exc:
            raise ValueError(str(exc)) from None
    return s


SETTINGS: tuple[Setting, ...] = (
    Setting("target", "directory on the device under test (repeatable; tests are parametrized over targets). "
            "Default: a directory under pytest's basetemp, reported as whatever device backs it. "
            "Env NVME_AI_TARGET takes several separated by ':'.", _str, [], kind="list", metavar="DIR"),
    Setting("profile", "sizes and durations: quick (CI, no GPU/NVMe), standard (nightly on a runner), "
            "full (the seed study's matrix). Default: quick.", _profile, "quick", metavar="{quick,standard,full}"),
    Setting("report_dir", "write DIR/<run-id>/results.json and index.html, and point DIR/latest at the newest run. "
            "Default: reports/ under the rootdir.", _str, "reports", metavar="DIR"),
    Setting("baseline_dir", "directory of stored baselines (one JSON file per baseline name). Default: baselines/.",
            _str, "baselines", metavar="DIR"),
    Setting("baseline_name", "baseline to compare with / save to. Default: a slug of each target's device fingerprint.",
            _name, None, metavar="NAME"),
    Setting("save_baseline", "write/refresh baseline entries from this run's passing tests.", _bool, False, kind="flag"),
    Setting("tolerance", "allowed change in percent before a metric counts as changed (default 10). "
            "The nvme_ai(tolerance=...) marker overrides it per test.", _percent, 10.0, metavar="PCT"),
    Setting("repeat", "repetitions per measurement (default: the profile's). The marker's repeat= overrides it.",
            _positive_int, None, metavar="N"),
    Setting("strict", "treat a baseline from a different device fingerprint as an error instead of 'incomparable'.",
            _bool, False, kind="flag"),
    Setting("aio", "aio settings for ZeRO-Inference runs: 'default' (DeepSpeed's), 'auto' (tune the target first) "
            "or a JSON aio block.", _aio, "default", metavar="auto|default|JSON"),
    Setting("benchmark_json", "also write time-valued metrics as a pytest-benchmark JSON file "
            "(so `pytest-benchmark compare` works on them).", _str, None, metavar="PATH"),
    Setting("history", "run history store: a path (SQLite file), a postgresql://user@host/db URL shared by a fleet, "
            "or 'none' to turn it off. Default: history.sqlite beside the reports (in the report dir).",
            _str, None, metavar="PATH|URL|none"),
    Setting("timeout", "seconds before a child measurement (fio, a ZeRO-Inference run) is killed and "
            "recorded as 'timeout'. Default: the profile's.", _positive_int, None, metavar="SECONDS"),
)
BY_NAME = {s.name: s for s in SETTINGS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("nvme-ai", "NVMe offload qualification (pytest-nvme-ai)")
    for s in SETTINGS:
        if s.kind == "flag":
            group.addoption(s.option, action="store_true", default=None, dest=f"nvme_ai_{s.name}", help=s.help)
            parser.addini(s.ini, s.help, type="bool", default=None)
        elif s.kind == "list":
            group.addoption(s.option, action="append", default=None, dest=f"nvme_ai_{s.name}",
                            metavar=s.metavar, help=s.help)
            parser.addini(s.ini, s.help, type="linelist", default=[])
        else:
            group.addoption(s.option, action="store", default=None, dest=f"nvme_ai_{s.name}",
                            metavar=s.metavar, help=s.help)
            parser.addini(s.ini, s.help, type="string", default=None)


def _raw(config: pytest.Config, s: Setting) -> tuple[str, Any]:
    """(source, raw value) by precedence CLI > env > ini; source "default" when none is set."""
    cli = config.getoption(f"nvme_ai_{s.name}")
    if cli not in (None, []):
        return f"command line {s.option}", cli
    env = os.environ.get(s.envvar) if s.env else None
    if env not in (None, ""):
        return f"environment variable {s.envvar}", (env.split(os.pathsep) if s.kind == "list" else env)
    try:
        ini = config.getini(s.ini)
    except ValueError as exc:  # pytest's own bool parsing of an ini value
        raise SettingError(f"pytest-nvme-ai: bad value for {s.name} from ini key {s.ini}: {exc}") from None
    if ini not in (None, "", []):
        return f"ini key {s.ini}", ini
    return "default", None


def resolve(config: pytest.Config, name: str) -> Any:
    """Value of a setting from CLI > env > ini > default, parsed; errors say where it came from."""
    s = BY_NAME[name]
    source, raw = _raw(config, s)
    if source == "default":
        return list(s.default) if s.kind == "list" else s.default
    try:
        if s.kind == "list":
            return [s.parse(v) for v in raw if str(v).strip()]
        if s.kind == "flag" and isinstance(raw, bool):
            return raw
        return s.parse(raw)
    except (ValueError, TypeError) as exc:
        raise SettingError(f"pytest-nvme-ai: bad value {raw!r} for {name} from {source}: {exc}") from None


def resolve_path(config: pytest.Config, name: str) -> Path | None:
    """A path setting made absolute against where it was given: the invocation directory for the
    command line and environment (what a user typing it expects), the ini file's directory (else the
    rootdir) for ini values and defaults."""
    value = resolve(config, name)
    if value is None:
        return None
    source, _ = _raw(config, BY_NAME[name])
    if source.startswith(("command line", "environment")):
        base = config.invocation_params.dir
    else:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / Path(value).expanduser()).resolve()


def parse_marker_value(name: str, value: Any, nodeid: str) -> Any:
    """Marker arguments go through the same parser so a bad marker fails with its test named."""
    s = BY_NAME[name]
    try:
        return s.parse(str(value))
    except (ValueError, TypeError) as exc:
        raise SettingError(f"pytest-nvme-ai: bad {name}={value!r} in the nvme_ai marker of {nodeid}: {exc}") from None
