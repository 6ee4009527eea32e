"""Every setting defined once: CLI option, ini key, env var, help text, parser.

Precedence (highest first), as pytest-timeout documents it:
    nvme_ai marker (per test, where the setting allows)  >  command line
    >  environment variable NVME_AI_*  >  ini key nvme_ai_*  >  profile / default
Errors name where the bad value came from.

Declarations live in this package, one module per concern (`session`, `gate`, `aio`, ...): a module
that defines `SETTINGS = (Setting(...), ...)` (and an `ORDER` for its place in --help) is picked up by
itself, so a new concern's option is a new file here and the concern reads it with `resolve(config, name)`.
The session reads its own settings once, at configure, into a frozen `resolved.RunSettings`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.registry import submodules
from pytest_nvme_ai.run.settings.base import Setting, SettingError

__all__ = ["BY_NAME", "SETTINGS", "Setting", "SettingError", "add_options", "parse_marker_value", "resolve",
           "resolve_path", "source_of"]


def _collect() -> tuple[Setting, ...]:
    found: list[Setting] = []
    where: dict[str, str] = {}
    for mod in submodules(__name__, "SETTINGS"):
        for st in mod.SETTINGS:
            if st.name in where:
                raise ImportError(f"setting {st.name!r} is declared twice: in {where[st.name]} and {mod.__name__}")
            where[st.name] = mod.__name__
            found.append(st)
    return tuple(found)


SETTINGS: tuple[Setting, ...] = _collect()
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
        if s.kind != "list":
            return f"environment variable {s.envvar}", env
        try:
            values = s.split_env(env) if s.split_env is not None else env.split(os.pathsep)
        except ValueError as exc:
            raise SettingError(f"pytest-nvme-ai: bad value {env!r} for {s.name} from environment variable "
                               f"{s.envvar}: {exc}") from None
        return f"environment variable {s.envvar}", values
    try:
        ini = config.getini(s.ini)
    except ValueError as exc:  # pytest's own bool parsing of an ini value
        raise SettingError(f"pytest-nvme-ai: bad value for {s.name} from ini key {s.ini}: {exc}") from None
    if ini not in (None, "", []):
        if s.kind == "list" and s.split_env is not None:   # each ini line may hold several values
            try:
                ini = [v for line in ini for v in s.split_env(str(line))]
            except ValueError as exc:
                raise SettingError(f"pytest-nvme-ai: bad value for {s.name} from ini key {s.ini}: {exc}") from None
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


def source_of(config: pytest.Config, name: str) -> str:
    """Where a setting's value comes from ("command line --nvme-ai-x", "environment variable ...", "default")."""
    return _raw(config, BY_NAME[name])[0]


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
