"""`nvme-ai` console script: report / compare / baseline / history / tune / devices.

Only argument parsing lives here; each subcommand is implemented by the module
that owns the concern (report/, gate/manage.py, history/cli.py, measure/aio/tune.py, measure/device.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nvme-ai", description="pytest-nvme-ai companion commands")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("report", help="render index.html from a results.json")
    r.add_argument("results", help="path to results.json (or a run directory)")
    r.add_argument("-o", "--output", help="output HTML file (default: index.html next to results.json)")
    r.add_argument("--history", metavar="URL", help="add the trend section from this history store (SQLite path or "
                   "postgresql:// URL; the run must be in it, e.g. after nvme-ai history import)")

    c = sub.add_parser("compare", help="compare two runs: text, JSON or a side-by-side HTML page",
                       description="Compare run B with run A, test by test. Exit status with --exit-code: 1 when a "
                       "gated metric got worse beyond the tolerance, 0 otherwise, 2 on bad input.")
    c.add_argument("a", help="first results.json (or run directory): the reference")
    c.add_argument("b", help="second results.json (or run directory): the run judged against A")
    c.add_argument("--labels", nargs=2, metavar=("A", "B"), help="column labels (default: run ids)")
    c.add_argument("--format", choices=("text", "json", "html"),
                   help="text (the default, on stdout), json, or html (the default when -o is given; without "
                   "-o it writes compare.html)")
    c.add_argument("-o", "--output", help="write to this file (HTML unless --format says otherwise)")
    c.add_argument("--exit-code", action="store_true",
                   help="exit 1 when a gated metric got worse beyond the tolerance (as git diff --exit-code)")

    b = sub.add_parser("baseline", help="manage stored baselines (windows of sessions)")
    bsub = b.add_subparsers(dest="baseline_command", required=True)
    bp = bsub.add_parser("promote", help="add a reviewed run to the baseline windows without rerunning it")
    bp.add_argument("results", help="results.json of the reviewed run (e.g. reports/latest/results.json)")
    bp.add_argument("--name", help="baseline name (default: each target's device fingerprint slug)")
    bp.add_argument("--baseline-dir", default="baselines", help="directory of baselines (default: baselines/)")
    bp.add_argument("--include-failed", action="store_true",
                    help="also accept tests that failed the gate (a reviewed, intended change)")
    bp.add_argument("--window", type=int, default=10,
                    help="sessions kept per entry after adding this one (default 10, as --nvme-ai-baseline-window)")
    bs = bsub.add_parser("show", help="list a baseline's entries and the sessions in each window")
    bs.add_argument("name", nargs="?", help="baseline name or file (default: list all baselines)")
    bs.add_argument("--baseline-dir", default="baselines", help="directory of baselines (default: baselines/)")
    bs.add_argument("--json", action="store_true", help="print the entries as JSON")
    bd = bsub.add_parser("drop", help="drop one session (by run id) from entries' windows, or delete entries",
                         description="Drop a session from the windows of the matching entries (--run), or delete "
                         "the matching entries (--entry without --run). The file is rewritten atomically under "
                         "the baseline lock; --dry-run shows what would change.")
    bd.add_argument("name", help="baseline name or file")
    bd.add_argument("--baseline-dir", default="baselines", help="directory of baselines (default: baselines/)")
    bd.add_argument("--run", metavar="RUN_ID", help="the run id of the session to drop (see baseline show)")
    bd.add_argument("--entry", metavar="TEXT", help="only entries whose key contains TEXT; without --run, "
                    "these entries are deleted")
    bd.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    bf = bsub.add_parser("diff", help="compare two baseline files entry by entry (newest session medians)")
    bf.add_argument("a", help="first baseline name or file")
    bf.add_argument("b", help="second baseline name or file")
    bf.add_argument("--baseline-dir", default="baselines", help="directory of baselines (default: baselines/)")
    bf.add_argument("--json", action="store_true", help="print JSON")

    t = sub.add_parser("tune", help="find the aio settings with the best read bandwidth on a target directory")
    t.add_argument("target", help="directory on the drive to tune for")
    t.add_argument("--budget", type=float, default=120.0, help="time budget in seconds (default 120)")
    t.add_argument("--file-size", default="1G", help="size of the test file (default 1G)")
    t.add_argument("--json", action="store_true", help="print machine-readable JSON only")

    d = sub.add_parser("devices", help="list the host's drives, or show the drive identity behind directories")
    d.add_argument("paths", nargs="*", help="directories or device nodes (default: list every drive of the host)")
    d.add_argument("--json", action="store_true", help="print JSON")

    from pytest_nvme_ai.history.cli import add_parser as add_history_parser  # light: argparse only
    add_history_parser(sub)
    return p


def _dispatch(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    if args.command == "report" and getattr(args, "history", None):
        from pytest_nvme_ai.run.history_hook import cli_report_with_trends
        return cli_report_with_trends
    if args.command == "report":
        from pytest_nvme_ai.report import cli_report
        return cli_report
    if args.command == "compare":
        from pytest_nvme_ai.report.compare import cli_compare
        return cli_compare
    if args.command == "baseline":
        from pytest_nvme_ai.gate import manage
        return {"promote": manage.cli_promote, "drop": manage.cli_drop, "diff": manage.cli_diff}.get(
            args.baseline_command, manage.cli_show)
    if args.command == "history":
        from pytest_nvme_ai.history.cli import cli_history
        return cli_history
    if args.command == "tune":
        from pytest_nvme_ai.measure.aio.tune import cli_tune
        return cli_tune
    if not args.paths:
        from pytest_nvme_ai.measure.host_drives import cli_list_drives
        return cli_list_drives
    from pytest_nvme_ai.measure.device import cli_devices
    return cli_devices


def _missing_output_dir(args: argparse.Namespace) -> Path | None:
    """The first missing directory of `-o DIR/FILE` (report, compare): the write creates it, and then says so."""
    out = getattr(args, "output", None) if args.command in ("report", "compare") else None
    if not out:
        return None
    parent = Path(out).expanduser().absolute().parent
    missing = None
    while not parent.exists() and parent != parent.parent:
        missing, parent = parent, parent.parent
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    missing = _missing_output_dir(args)
    try:
        rc = _dispatch(args)(args)
        if missing is not None and missing.is_dir():
            print(f"nvme-ai {args.command}: created the directory {missing} (it did not exist)")
        return rc
    except (FileNotFoundError, ValueError, PermissionError, OverflowError) as exc:
        # Bad input: one line that says what is wrong, no traceback.
        print(f"nvme-ai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`nvme-ai history | head`): stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"nvme-ai {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
