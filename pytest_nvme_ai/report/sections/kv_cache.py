"""KV cache on the drive (suites/test_kv_cache.py): time to first token cold vs warm from LMCache's
tiers, cached tokens/s, and a retrieve's time at the device apart from the host's.

One table per case. The tier verdict (live on the drive or not, and why) and the O_DIRECT check are
columns: a tier that never reached the drive is the failure this suite exists to show. Runs that
ended without numbers are listed with their outcome, never dropped.
"""
from __future__ import annotations

from pytest_nvme_ai.report.fmt import as_map
from pytest_nvme_ai.report.sections.base import Section, SectionBuilder, mcell, param
from pytest_nvme_ai.report.view import Cell, Table, TestView, status_cell

ORDER = 45
TITLE = "KV cache on the drive (LMCache local_disk)"


def tier_cell(v: TestView) -> Cell:
    extra = as_map(v.raw.get("extra"))
    tier = as_map(extra.get("tier"))
    if not tier:
        return Cell(str(extra.get("run_outcome") or "—"))
    if tier.get("live"):
        odirect = "O_DIRECT" if extra.get("odirect_verified") else "no O_DIRECT"
        return Cell(f"live ({extra.get('cache_fs_type') or '?'}, {odirect})", title=str(extra.get("odirect_how") or ""))
    reasons = tier.get("reasons") or []
    return Cell("not on the drive", css="bad", title="; ".join(str(r) for r in reasons))


def shape_text(v: TestView) -> str:
    per_token = param(v, "kv_bytes_per_token")
    size = f"{per_token / 1024:.0f} KiB/token" if isinstance(per_token, (int, float)) else "?"
    return f"{param(v, 'kv_shape') or '?'} ({size}), memory tier {param(v, 'cpu_tier_mib')} MiB"


def serving_table(views: list[TestView]) -> Table:
    rows = [[Cell(shape_text(v)), Cell(f"{param(v, 'users')} users × {param(v, 'rounds')} rounds"),
             mcell(v, "kv_ttft_cold"), mcell(v, "kv_ttft_warm"), mcell(v, "kv_ttft_warm_vs_cold"),
             mcell(v, "kv_hit_rate"), mcell(v, "kv_disk_hit_fraction"), mcell(v, "kv_restore_match"),
             tier_cell(v), status_cell(v)] for v in views]
    return Table(["KV shape", "workload", "TTFT cold", "TTFT warm", "warm / cold", "hit rate", "hits from drive",
                  "restore = prefill", "tier", "verdict"], rows,
                 "Serving: time to first token, full prefill (cold) vs prefix restored from the tiers (warm)",
                 numeric_from=2)


def storage_table(views: list[TestView]) -> Table:
    rows = [[Cell(shape_text(v)), Cell(f"{param(v, 'sequences')} × {param(v, 'seq_tokens')} tokens"),
             mcell(v, "kv_store_tokens_per_s"), mcell(v, "kv_retrieve_tokens_per_s"),
             mcell(v, "kv_retrieve_device_p50"), mcell(v, "kv_retrieve_device_p95"), mcell(v, "kv_retrieve_device_p99"),
             mcell(v, "kv_retrieve_host_p95"), mcell(v, "kv_write_bytes_per_token"),
             mcell(v, "kv_read_bytes_per_token"), tier_cell(v), status_cell(v)] for v in views]
    return Table(["KV shape", "volume", "store tok/s", "retrieve tok/s", "device P50", "device P95", "device P99",
                  "host P95", "written / token", "read / token", "tier", "verdict"], rows,
                 "Storage-shaped: cached tokens/s, a retrieve's device time (chunk reads in flight) vs host time",
                 numeric_from=2)


def kv_cache_section(views: list[TestView]) -> Section:
    sec = Section("kv_cache", TITLE, tests=views)
    sec.intro.append("LMCache's in-memory tier is smaller than the working set, so reuse has to come from its "
                     "local_disk backend on the target (O_DIRECT). Cold and warm are measured in one process.")
    serving = [v for v in views if param(v, "case") == "serving" or "serving" in v.nodeid]
    storage = [v for v in views if v not in serving and (param(v, "case") == "storage" or "storage" in v.nodeid)]
    if serving:
        sec.tables.append(serving_table(serving))
    if storage:
        sec.tables.append(storage_table(storage))
    rest = [v for v in views if v not in serving and v not in storage]
    if rest:
        sec.tables.append(Table(["test", "verdict"], [[Cell(v.nodeid), status_cell(v)] for v in rest], numeric_from=2))
    return sec


SECTION = SectionBuilder("kv_cache", TITLE, kv_cache_section)
