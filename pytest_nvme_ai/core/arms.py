"""The two arms of an A/B session, as plain data: what arm A (the reference) changes.

Arm B, the candidate, is the run as configured. Arm A differs from it by the overrides of
`--nvme-ai-ab` (repeatable; ini `nvme_ai_ab`, env `NVME_AI_AB`). These names are a public contract
(users' scripts spell them):

    same             no difference: an A/A run, which measures the runner's pair noise
    target=DIR       arm A measures another directory (a golden drive against the drive under test)
    python=PATH      arm A's children (ZeRO-Inference/ZeRO-Infinity workers, the aio worker) run under
                     another interpreter, with its own DeepSpeed, torch and transformers
    fio=PATH         arm A runs another fio binary
    aio=JSON         arm A's aio settings are updated with this JSON object
    env:NAME=VALUE   an environment variable for arm A's children (repeatable; an empty VALUE is a
                     value, e.g. `env:CUDA_VISIBLE_DEVICES=` hides the GPUs)

Nothing here touches the file system or starts anything: paths are kept as given, and resolving
them (does the interpreter exist, is the target writable) is the session's job, where the error can
say which option they came from. What is checked here is the shape of each value, so that a typo
fails at start-up with a message that says what to write instead of running an hour-long session
whose arm A was silently the same as arm B.

`--nvme-ai-read-cap FRACTION` is parsed here too (`parse_read_cap`): the fraction of the target's
measured fio bandwidth the run as configured (arm B, in A/B mode) may read at.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

OPTION = "--nvme-ai-ab"
KEYS = ("same", "target", "python", "fio", "aio", "env")
USAGE = "same | target=DIR | python=PATH | fio=PATH | aio=JSON | env:NAME=VALUE"
_PATH_KEYS = ("target", "python", "fio")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SLUG_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.+-]+")


class ArmError(ValueError):
    """A bad `--nvme-ai-ab` or `--nvme-ai-read-cap` value (a ValueError: the CLI prints it as one line)."""


@dataclass(frozen=True)
class ArmOverrides:
    """What arm A changes against arm B. Empty (all None, no env) only when `same` is set."""

    same: bool = False
    target: str | None = None
    python: str | None = None
    fio: str | None = None
    aio_json: str | None = None                  # canonical JSON (sorted keys): frozen and hashable
    env: tuple[tuple[str, str], ...] = ()        # sorted by name

    def __post_init__(self) -> None:
        # Constructed in code as well as parsed: the same rules hold either way.
        differs = self._differences()
        if self.same and differs:
            raise ArmError(f"{OPTION}: 'same' (an A/A run) cannot be combined with {', '.join(differs)}; "
                           "give 'same' alone, or only the overrides")
        if not self.same and not differs:
            raise ArmError(f"{OPTION}: arm A differs from arm B in nothing; give 'same' for an A/A run, "
                           f"or at least one override ({USAGE})")
        if list(self.env) != sorted(self.env) or len({n for n, _ in self.env}) != len(self.env):
            raise ArmError(f"{OPTION}: env overrides must be unique by name and sorted; build them with parse_ab")
        bad = [n for n, _ in self.env if not _ENV_NAME_RE.fullmatch(n)]
        if bad:
            raise ArmError(f"{OPTION}: env name {bad[0]!r} is not a variable name; use letters, digits and '_'")
        if self.aio_json is not None:
            _parse_aio(self.aio_json, OPTION)

    def _differences(self) -> list[str]:
        out = [f"{k}={getattr(self, k)}" for k in _PATH_KEYS if getattr(self, k) is not None]
        if self.aio_json is not None:
            out.append(f"aio={self.aio_json}")
        out.extend(f"env:{n}={v}" for n, v in self.env)
        return out

    @property
    def aio(self) -> dict[str, Any] | None:
        """arm A's aio settings override, as a fresh dict (None when arm A keeps arm B's)."""
        if self.aio_json is None:
            return None
        value: dict[str, Any] = json.loads(self.aio_json)
        return value

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    def key(self) -> str:
        """Canonical text of the overrides: equal overrides, equal key (history series, report labels)."""
        return "same" if self.same else ";".join(self._differences())

    def slug(self) -> str:
        """A plain name for the series (letters, digits, '_.+-', at most 128): readable part + hash of key()."""
        digest = hashlib.sha256(self.key().encode()).hexdigest()[:10]
        readable = _SLUG_UNSAFE_RE.sub("-", self.key())
        readable = re.sub(r"\.{2,}", ".", readable).strip("-.+_") or "ab"   # '..' is never part of a name
        return f"ab-{readable[:100]}-{digest}"

    def describe(self) -> str:
        """One line for a terminal or a report: what arm A is."""
        return "A = B (same: an A/A run)" if self.same else "A: " + ", ".join(self._differences())

    def to_dict(self) -> dict[str, Any]:
        """The results.json shape: every key present, None where arm A keeps arm B's setting."""
        return {"same": self.same, "target": self.target, "python": self.python, "fio": self.fio,
                "aio": self.aio, "env": self.env_map}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArmOverrides:
        """Inverse of `to_dict` (a results.json read back); errors say which field is wrong."""
        aio = data.get("aio")
        if aio is not None and not isinstance(aio, dict):
            raise ArmError(f"arms: 'aio' must be a JSON object or null, not {type(aio).__name__}")
        env = data.get("env") or {}
        if not isinstance(env, dict):
            raise ArmError(f"arms: 'env' must be an object of NAME: VALUE, not {type(env).__name__}")
        values: dict[str, str | None] = {}
        for k in _PATH_KEYS:
            v = data.get(k)
            if v is not None and not isinstance(v, str):
                raise ArmError(f"arms: {k!r} must be a string or null, not {type(v).__name__}")
            values[k] = v
        return cls(same=bool(data.get("same", False)), target=values["target"], python=values["python"],
                   fio=values["fio"], aio_json=None if aio is None else _canonical_json(aio),
                   env=tuple(sorted((str(n), str(v)) for n, v in env.items())))


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _unknown_key(key: str, source: str) -> ArmError:
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ArmError(f"{source}: unknown key {key!r}{hint}; use {USAGE}")


def _parse_env(item: str, source: str) -> tuple[str, str]:
    rest = item[len("env:"):]
    if "=" not in rest:
        raise ArmError(f"{source}: {item!r} has no value; write env:NAME=VALUE (an empty VALUE is allowed)")
    name, value = rest.split("=", 1)
    if not _ENV_NAME_RE.fullmatch(name):
        raise ArmError(f"{source}: env name {name!r} in {item!r} is not a variable name; "
                       "use letters, digits and '_', not starting with a digit (e.g. env:OMP_NUM_THREADS=4)")
    return name, value


def _parse_aio(value: str, source: str) -> str:
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as e:
        raise ArmError(f"{source}: aio={value!r} is not JSON ({e.msg} at character {e.pos}); "
                       "write a JSON object, e.g. aio='{\"block_size\": 1048576, \"queue_depth\": 32}'") from None
    if not isinstance(obj, dict) or not obj:
        raise ArmError(f"{source}: aio={value!r} must be a non-empty JSON object of aio settings, "
                       "e.g. aio='{\"block_size\": 1048576}'")
    return _canonical_json(obj)


def parse_ab(values: Iterable[str], source: str = OPTION) -> ArmOverrides | None:
    """The `--nvme-ai-ab` values (in the order given) as arm A's overrides; None when there are none.

    `source` names where the values came from (the option, the ini key, the env var), for the errors.
    """
    items = [str(v).strip() for v in values]
    items = [v for v in items if v]
    if not items:
        return None
    same = False
    paths: dict[str, str] = {}
    aio: str | None = None
    env: dict[str, str] = {}
    for item in items:
        if item == "same":
            if same:
                raise ArmError(f"{source}: 'same' given twice; give it once")
            same = True
            continue
        if item.startswith("env:"):
            name, value = _parse_env(item, source)
            if name in env:
                raise ArmError(f"{source}: env:{name} given twice ({env[name]!r} and {value!r}); give each name once")
            env[name] = value
            continue
        if "=" not in item:
            if item in KEYS:
                hint = "DIR" if item == "target" else "JSON" if item == "aio" else "NAME=VALUE" if item == "env" \
                    else "PATH"
                sep = ":" if item == "env" else "="
                raise ArmError(f"{source}: {item!r} needs a value: write {item}{sep}{hint}")
            raise _unknown_key(item, source)
        key, value = item.split("=", 1)
        key = key.strip()
        if key == "env":
            raise ArmError(f"{source}: write environment overrides as env:NAME=VALUE, not {item!r}")
        if key == "same":
            raise ArmError(f"{source}: 'same' takes no value; write same, not {item!r}")
        if key not in KEYS:
            raise _unknown_key(key, source)
        if not value.strip():
            raise ArmError(f"{source}: {key}= is empty; give a value ({key}=" +
                           ("DIR" if key == "target" else "JSON" if key == "aio" else "PATH") +
                           f") or leave {key} out")
        if key == "aio":
            if aio is not None:
                raise ArmError(f"{source}: aio given twice; merge the settings into one JSON object")
            aio = _parse_aio(value, source)
            continue
        if key in paths:
            raise ArmError(f"{source}: {key} given twice ({paths[key]!r} and {value!r}); arm A has one {key}")
        paths[key] = value.strip()
    return ArmOverrides(same=same, target=paths.get("target"), python=paths.get("python"), fio=paths.get("fio"),
                        aio_json=aio, env=tuple(sorted(env.items())))


def split_ab_text(text: str, source: str = "NVME_AI_AB") -> list[str]:
    """An env var or ini line holding several values, split like a shell would.

    Shell quoting, not commas: aio JSON holds commas, and paths may hold spaces, e.g.
    NVME_AI_AB="target=/mnt/golden 'aio={\"block_size\": 1048576, \"queue_depth\": 8}'".
    """
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ArmError(f"{source}: cannot split {text!r} into values ({e}); quote each value like a shell "
                       "argument, e.g. target=/mnt/golden 'aio={\"block_size\": 1048576}'") from None


def series_key(arm_a: ArmOverrides, read_cap_b: float | None = None) -> str:
    """The history series of an A/B comparison: arm A's overrides and what changes arm B (its read cap)."""
    cap = "" if read_cap_b is None else f"|B:read_cap={read_cap_b:g}"
    return f"A:{arm_a.key()}{cap}"


# ---- --nvme-ai-read-cap ---------------------------------------------------------------------------
def parse_read_cap(value: str | float, source: str = "--nvme-ai-read-cap") -> float:
    """A fraction 0 < f <= 1 of the target's measured read bandwidth; '70%' reads as 0.7.

    A value above 1 is refused rather than taken as a percentage: 'read cap 70' would otherwise mean
    either 70% or a typo for 0.70, and a cap is only useful when its size is known.
    """
    if isinstance(value, bool):
        raise ArmError(f"{source}={value!r} is not a fraction; give e.g. 0.7 to read at 70% of the measured bandwidth")
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        f = float(text[:-1] if percent else text)
    except ValueError:
        raise ArmError(f"{source}={value!r} is not a number; give a fraction such as 0.7 (or 70%)") from None
    if percent:
        f /= 100.0
    if not math.isfinite(f) or not 0.0 < f <= 1.0:
        raise ArmError(f"{source}={value!r} must be a fraction above 0 and at most 1 "
                       "(0.5 reads at half the measured bandwidth, 1 caps at the bandwidth itself)")
    return f
