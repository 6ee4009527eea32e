"""Per-suite sections of the run page, one module per suite.

A module here that defines `SECTION = SectionBuilder(suite, title, build)` (see `base`) is picked up
by itself, in its `ORDER` (fio 10, aio 20, ZeRO-Inference 30, drive speed 35, write 36, ZeRO-Infinity 40;
a new suite takes a free number: no two sections share one), so a new suite's section is a new file and
no edit here. Suites without a module get the generic section,
so a new suite shows up on the page before anyone writes one.
"""
from __future__ import annotations

from pytest_nvme_ai.core.registry import submodules
from pytest_nvme_ai.report.sections.aio import tuned_cards
from pytest_nvme_ai.report.sections.base import Section, SectionBuilder, generic_section
from pytest_nvme_ai.report.view import TestView

BUILDERS: tuple[SectionBuilder, ...] = tuple(m.SECTION for m in submodules(__name__, "SECTION"))
SUITE_TITLES: dict[str, str] = {b.suite: b.title for b in BUILDERS}   # also the page's suite order


def build_sections(views: list[TestView]) -> list[Section]:
    by_suite: dict[str, list[TestView]] = {}
    for v in views:
        by_suite.setdefault(v.suite, []).append(v)
    sections = [b.build(by_suite.pop(b.suite)) for b in BUILDERS if b.suite in by_suite]
    sections += [generic_section(f"suite-{i}", f"Suite: {suite}", by_suite[suite])
                 for i, suite in enumerate(sorted(by_suite))]
    # Tuned settings are recorded by whichever test asked for them (`--nvme-ai-aio auto` tunes inside the
    # ZeRO-Inference tests): show them once per target, next to the aio sweep when there is one.
    cards = tuned_cards(views)
    if cards:
        home = next((s for s in sections if s.id == "aio_read"), None)
        if home is None:
            home = Section("aio_tuning", "DeepSpeed aio tuning")
            sections.insert(0 if not sections or sections[0].id != "seq_read" else 1, home)
        home.cards.extend(cards)
    return sections
