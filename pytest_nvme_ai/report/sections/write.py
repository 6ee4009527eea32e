"""Write-side section: fio sequential write and the checkpoint workload (write + fsync, cold read-back)."""
from __future__ import annotations

from pytest_nvme_ai.core.extras import WriteExtra
from pytest_nvme_ai.core.results import WRITE_CHECKPOINT, SuiteTest
from pytest_nvme_ai.core.text import format_size, size_or_none
from pytest_nvme_ai.report.fmt import as_map, num
from pytest_nvme_ai.report.sections.base import Section, SectionBuilder, mcell, param
from pytest_nvme_ai.report.view import Cell, Table, TestView, status_cell

ORDER = 36   # after drive_speed (35): the page order before the tie was broken by name
TITLE = "Write side: fio sequential write and checkpoint"


def size_text(value: object) -> str:
    n = size_or_none(value)
    return format_size(n) if n else "?"


def write_section(views: list[TestView]) -> Section:
    sec = Section("write", TITLE, tests=views)
    rows = []
    for v in views:
        extra = as_map(v.raw.get("extra"))
        what = "checkpoint" if SuiteTest.of(v.raw) == WRITE_CHECKPOINT else "fio seq write"
        size = num(extra.get(WriteExtra.CHECKPOINT_BYTES))
        detail = (f"{param(v, 'files')} files × {size_text(param(v, 'file_bytes'))}, read back "
                  f"{extra.get(WriteExtra.READBACK_METHOD, '?')}" if what == "checkpoint"
                  else f"bs {param(v, 'bs')}, QD {param(v, 'iodepth')}, {param(v, 'size')}")
        rows.append([Cell(what), Cell(detail, title=f"{size:.0f} B" if size else ""), mcell(v, "write_bw"),
                     mcell(v, "fsync_latency"), mcell(v, "readback_bw"), status_cell(v)])
    sec.tables.append(Table(["check", "what", "write bw", "fsync latency (median)", "read-back bw", "verdict"],
                            rows, "Write bandwidth, fsync latency and cold read-back", numeric_from=2))
    return sec


SECTION = SectionBuilder("write", TITLE, write_section)
