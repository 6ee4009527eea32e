"""Qualification rigor (docs/qualification.md): steady-state budget, preconditioning, several drives at once,
remote drives through fio's client/server mode."""
from __future__ import annotations

from pytest_nvme_ai.run.settings.base import Setting, boolean

ORDER = 50


def seconds(v: str) -> float:
    x = float(v)
    if x < 0:
        raise ValueError(f"{v!r} must be a number of seconds, 0 or more")
    return x


def fio_client(v: str) -> str:
    """HOST[,PORT]=DIR for fio client/server, checked here so a typo stops the run before any test."""
    from pytest_nvme_ai.measure.fio.remote import parse_remote

    parse_remote(str(v))
    return str(v)


SETTINGS = (
    Setting("ss_budget", "steady-state time budget per seq-read repetition in seconds (fio ss=, judged by SNIA's "
            "criteria). Default: the profile's (quick 0 = off, standard 120, full 600); 0 turns it off.",
            seconds, None, metavar="SECONDS"),
    Setting("precondition", "before the seq-read points, fill each target's private directory with a sequential "
            "write sized by the profile and capped by the free space (qualification; off by default).",
            boolean, False, kind="flag"),
    Setting("concurrent", "also run the seq-read points on all targets at once: one fio run with a job per "
            "target, aggregate and per-drive bandwidth (needs 2 or more targets).", boolean, False, kind="flag"),
    Setting("fio_client", "HOST[,PORT]=DIR (repeatable): run the raw seq-read checks on a remote `fio --server` "
            "HOST, in a private directory under DIR on that host (never --nvme-ai-target). Env "
            "NVME_AI_FIO_CLIENT takes several separated by ':'.", fio_client, [], kind="list", metavar="HOST=DIR"),
)
