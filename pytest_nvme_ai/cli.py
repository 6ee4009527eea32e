"""`nvme-ai` console script: report / compare / baseline / tune / devices.

Only argument parsing lives here; each subcommand is implemented by the module
that owns the concern (report/, gate/manage.py, history/cli.py, measure/aio/tune.py, measure/device.py).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nvme-ai", description="pytest-nvme-ai companion commands")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("report", help="render index.html from a results.json")
    r.add_argument("results", help="path to results.json (or a run directory)")
    r.add_argument("-o", "--output", help="output HTML file (default: index.html next to results.json)")
    r.add_argument("--history", metavar="URL", help="add the trend section from this history store (SQLite path or "
                   "postgresql:// URL; the run must be in it, e.g. after nvme-ai history import)")

    c = sub.add_parser("compare", help="side-by-side HTML page for two runs")
    c.add_argument("a", help="first results.json (or run directory)")
    c.add_argument("b", help="second results.json (or run directory)")
    c.add_argument("--labels", nargs=2, metavar=("A", "B"), help="column labels (default: run ids)")
    c.add_argument("-o", "--output", default="compare.html", help="output HTML file (default: compare.html)")

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

    t = sub.add_parser("tune", help="find the aio settings with the best read bandwidth on a target directory")
    t.add_argument("target", help="directory on the drive to tune for")
    t.add_argument("--budget", type=float, default=120.0, help="time budget in seconds (default 120)")
    t.add_argument("--file-size", default="1G", help="size of the test file (default 1G)")
    t.add_argument("--json", action="store_true", help="print machine-readable JSON only")

    d = sub.add_parser("devices", help="show the drive identity behind directories")
    d.add_argument("paths", nargs="*", default=["."], help="directories (default: .)")
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
        from pytest_nvme_ai.report import cli_compare
        return cli_compare
    if args.command == "baseline":
        from pytest_nvme_ai.gate import manage
        return manage.cli_promote if args.baseline_command == "promote" else manage.cli_show
    if args.command == "history":
        from pytest_nvme_ai.history.cli import cli_history
        return cli_history
    if args.command == "tune":
        from pytest_nvme_ai.measure.aio.tune import cli_tune
        return cli_tune
    from pytest_nvme_ai.measure.device import cli_devices
    return cli_devices


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return _dispatch(args)(args)
    except (FileNotFoundError, ValueError, PermissionError, OverflowError) as exc:
        # Bad input: one line that says what is wrong, no traceback.
        print(f"nvme-ai {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nvme-ai {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
