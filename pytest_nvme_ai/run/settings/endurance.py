"""The drive's rated write endurance, for the projected life of each workload (core.endurance)."""
from __future__ import annotations

from pytest_nvme_ai.core.endurance import parse_positive, parse_tb
from pytest_nvme_ai.run.settings.base import Setting

ORDER = 60

SETTINGS = (
    Setting("rated_tbw", "the drive's rated write endurance in terabytes written (10^12 B, the datasheet's TBW): "
            "the report shows each workload's projected life (days to this TBW at its write rate, run "
            "continuously) and the share of it one run used.", parse_tb, None, metavar="TB"),
    Setting("rated_dwpd", "the rating as drive writes per day instead of a TBW: TBW = DWPD x the target's "
            "capacity x 365 x --nvme-ai-warranty-years. Give one of --nvme-ai-rated-tbw and this.",
            parse_positive, None, metavar="DWPD"),
    Setting("warranty_years", "warranty period that a DWPD rating spans (default 5, the usual enterprise "
            "warranty).", parse_positive, 5.0, metavar="YEARS"),
)
