"""A/B in one session (issue 23, docs/ab.md): arm A's overrides, the time budget per test, the read cap.

`--nvme-ai-ab` values are checked one by one here (a typo stops the run at configure, naming its source);
the session parses them together with `core.arms.parse_ab` (same given twice, same with overrides).
The ini key is a line list and each line, like the env var, is split like a shell (`split_ab_text`),
since aio JSON holds commas and colons.
"""
from __future__ import annotations

from pytest_nvme_ai.core.arms import parse_ab, parse_read_cap, split_ab_text
from pytest_nvme_ai.run.settings.base import Setting

ORDER = 40


def ab_value(v: str) -> str:
    """One --nvme-ai-ab value, checked alone (its shape); combinations are checked by parse_ab later."""
    text = str(v).strip()
    parse_ab([text], source="value")
    return text


def budget(v: str) -> float:
    try:
        x = float(str(v).strip().removesuffix("s"))
    except ValueError:
        raise ValueError(f"{v!r} is not a number of seconds, e.g. 120") from None
    if not x > 0 or x != x or x == float("inf"):
        raise ValueError(f"{v!r} must be a positive number of seconds, e.g. 120")
    return x


def read_cap(v: str) -> float:
    return parse_read_cap(v, source="read cap")


def order(v: str) -> str:
    text = str(v).strip().lower()
    if text not in ("random", "abba"):
        raise ValueError(f"{v!r}: choose random (a seeded coin per pair, recorded) or abba (AB, BA, AB, ...)")
    return text


SETTINGS = (
    Setting("ab", "A/B in one session: arm A (the reference) differs from the run as configured (arm B) by "
            "these overrides (repeatable): same | target=DIR | python=PATH | fio=PATH | aio=JSON | env:NAME=VALUE. "
            "Each measured point runs as interleaved pairs until every gated metric reads same, worse or better, "
            "or the budget is spent (unknown). Env NVME_AI_AB and ini lines are split like a shell. See docs/ab.md.",
            ab_value, [], kind="list", metavar="OVERRIDE", split_env=split_ab_text),
    Setting("ab_budget", "A/B: seconds per test that the pairs may take before an undecided metric reads "
            "'unknown' (default: the profile's, quick 120).", budget, None, metavar="SECONDS"),
    Setting("read_cap", "cap the reads of the run as configured (arm B in A/B mode) at FRACTION (0 < f <= 1, "
            "or 70%%) of the target's fio bandwidth measured just before, with a cgroup block throttle "
            "(root only; elsewhere the capped tests skip with the reason).", read_cap, None, metavar="FRACTION"),
    Setting("ab_order", "A/B: order of the arms within each pair: random (default; a coin per pair from a seed "
            "recorded in results.json) or abba (AB, BA, AB, ...).", order, "random", metavar="random|abba"),
)
