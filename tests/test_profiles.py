"""Every per-profile knob lives in core.profiles.Profile, and every profile sets every knob."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from pytest_nvme_ai.core.profiles import PROFILES, InferenceCase, Profile

ROOT = Path(__file__).resolve().parents[1]
# The one place that may spell a profile's name as a value: its definition, and the default choice.
ALLOWED = {ROOT / "pytest_nvme_ai" / "core" / "profiles.py", ROOT / "pytest_nvme_ai" / "run" / "settings" / "session.py"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_sets_every_knob(name: str) -> None:
    p = PROFILES[name]
    assert p.name == name
    for f in fields(Profile):
        value = getattr(p, f.name)
        assert value is not None, f"profile {name!r} leaves {f.name} unset"
        if isinstance(value, tuple):
            assert value, f"profile {name!r} has an empty {f.name}"
    assert all(isinstance(c, InferenceCase) for c in p.zi_single + p.zi_pair)


def test_a_profile_missing_a_knob_fails_when_defined() -> None:
    with pytest.raises(TypeError, match="missing"):
        Profile("new", repeat=1, child_timeout_s=10)  # type: ignore[call-arg]


def _profile_name_literals(path: Path) -> list[str]:
    """Places that key on a profile's name: {"quick": ...} tables and `x == "full"` comparisons."""
    found = []
    names = set(PROFILES)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        keys: list[ast.expr | None] = []
        if isinstance(node, ast.Dict):
            keys = list(node.keys)
        elif isinstance(node, ast.Compare):
            keys = [node.left, *node.comparators]
        for k in keys:
            if isinstance(k, ast.Constant) and k.value in names:
                found.append(f"{path}:{k.lineno} {k.value!r}")
    return found


def test_no_per_profile_tables_outside_profiles() -> None:
    files = [*(ROOT / "pytest_nvme_ai").rglob("*.py"), *(ROOT / "suites").rglob("*.py")]
    found = [hit for f in files if f not in ALLOWED for hit in _profile_name_literals(f)]
    assert not found, "per-profile knobs outside core/profiles.py (add a Profile field instead):\n  " + "\n  ".join(found)


def test_the_scan_sees_a_table(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text('BUDGET = {"quick": 1, "full": 9}\nreuse = profile.name == "full"\n')
    assert len(_profile_name_literals(f)) == 3
