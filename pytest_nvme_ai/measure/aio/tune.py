"""`nvme-ai tune`: the DeepSpeed aio settings with the best read bandwidth on a target.

DeepSpeed's `ds_nvme_tune` sweeps 8 points (bs {1M,8M} × qd {32,128} × par {1,8})
exhaustively and emits `num_threads`, a key DeepSpeed does not parse (it falls
back to one thread). We search a 240-point grid (bs 128K..16M × qd 4..128 ×
par 1..16) and emit the key the installed DeepSpeed reads.

Method (noise-aware coordinate descent, `METHOD` below):
1. seed: DeepSpeed's default and ds_nvme_tune's 8 points, one read each, so the
   result is never worse than ds_nvme_tune's sweep (up to noise);
2. descent: from the best point, line-search one axis at a time over all its
   values (others fixed); move only on a gain larger than the noise margin;
   cycle the axes until a full cycle moves nothing. Read bandwidth is close to
   separable and saturating in bs, qd and parallelism, which is the case
   coordinate descent handles well;
3. confirm: re-measure the top-k and the default in interleaved ABBA rounds,
   score each read relative to its round's mean (drift and contention hit a
   whole round alike) and pick the best median; a finalist within 1% of it in
   both confirmation and screening counts as tied, and the cheapest (fewest
   threads, then shallowest queue, then smallest block) wins.
The budget is a soft limit: descent stops early to leave time for confirmation.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pytest_nvme_ai.core.extras import TunerExtra
from pytest_nvme_ai.core.cache import CacheKey
from pytest_nvme_ai.measure.aio.runner import AioError, AioSettings, measure_read, mem_available, shared_worker, write_data_file
from pytest_nvme_ai.measure.deepspeed.version import DS_AIO_DEFAULTS, default_aio_block, deepspeed_version, thread_key

if TYPE_CHECKING:
    from pytest_nvme_ai.core.recorder import Recorder
    from pytest_nvme_ai.core.targets import Target

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BLOCK_SIZES = tuple(k * KiB for k in (128, 256, 512)) + tuple(m * MiB for m in (1, 2, 4, 8, 16))
QUEUE_DEPTHS = (4, 8, 16, 32, 64, 128)
PARALLELISM = (1, 2, 4, 8, 16)
DS_NVME_TUNE_GRID = tuple(AioSettings(bs, qd, par) for bs in (MiB, 8 * MiB) for qd in (32, 128) for par in (1, 8))
DEFAULT_SETTINGS = AioSettings(DS_AIO_DEFAULTS["block_size"], DS_AIO_DEFAULTS["queue_depth"],
                               DS_AIO_DEFAULTS["intra_op_parallelism"], DS_AIO_DEFAULTS["single_submit"],
                               DS_AIO_DEFAULTS["overlap_events"])
METHOD = ("noise-aware coordinate descent: seed with DeepSpeed's default + ds_nvme_tune's 8 points, "
          "line-search one axis at a time (block size, queue depth, parallelism) until a full cycle gains "
          "less than the noise margin, then re-measure the top {k} and the default in {rounds} interleaved "
          "(ABBA) rounds and pick the best median of per-round relative scores (a near-tie, within 1% in both "
          "screening and confirmation, goes to the cheapest setting)")
NUM_THREADS_NOTE = ("DeepSpeed's own ds_nvme_tune emits \"num_threads\", which DeepSpeed does not parse: it would "
                    "silently fall back to 1 thread. This block uses \"{key}\", the key DeepSpeed {version} reads.")

Measure = Callable[[AioSettings], float]  # one read with these settings -> bytes/s


@dataclass(frozen=True)
class Space:
    block_sizes: tuple[int, ...] = BLOCK_SIZES
    queue_depths: tuple[int, ...] = QUEUE_DEPTHS
    parallelism: tuple[int, ...] = PARALLELISM

    def points(self) -> list[AioSettings]:
        return [AioSettings(b, q, p) for b, q, p in itertools.product(self.block_sizes, self.queue_depths,
                                                                        self.parallelism)]

    def __len__(self) -> int:
        return len(self.block_sizes) * len(self.queue_depths) * len(self.parallelism)


@dataclass(frozen=True)
class Evaluation:
    settings: AioSettings
    bw: float        # B/s; 0 when the read failed
    phase: str       # seed | descent | confirm | grid
    at_s: float      # seconds since the search started, when this read finished
    error: str | None = None


@dataclass(frozen=True)
class TuneResult:
    best: AioSettings
    block: dict[str, Any]          # ready-to-paste DeepSpeed `aio` block (installed version's key names)
    best_bw: float                 # B/s, median of the confirmation reads
    default_block: dict[str, Any]
    default_bw: float
    evaluations: int               # reads made
    distinct: int                  # settings tried
    elapsed: float                 # s
    method: str
    history: tuple[Evaluation, ...] = field(repr=False)
    file_size: int = 0
    space_size: int = len(Space())

    @property
    def gain(self) -> float | None:
        """best / default; None when the default could not be measured (JSON has no infinity)."""
        return self.best_bw / self.default_bw if self.default_bw > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"aio": self.block, "best_bw": self.best_bw, "default_aio": self.default_block,
                "default_bw": self.default_bw, "gain": self.gain, "evaluations": self.evaluations,
                "distinct_settings": self.distinct, "grid_size": self.space_size, "elapsed_s": self.elapsed,
                "file_size": self.file_size, "method": self.method,
                "history": [{**asdict(e.settings), "bw": e.bw, "phase": e.phase, "at_s": e.at_s, "error": e.error}
                            for e in self.history]}


class _Search:
    """Scores per setting, the clock and the budget: what the phases share."""

    def __init__(self, measure: Measure, budget_s: float, clock: Callable[[], float]) -> None:
        self.measure, self.budget_s, self.clock = measure, budget_s, clock
        self.t0 = clock()
        self.samples: dict[AioSettings, list[float]] = {}
        self.history: list[Evaluation] = []

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def mean_cost(self) -> float:
        return self.elapsed() / max(len(self.history), 1)

    def run(self, s: AioSettings, phase: str) -> float:
        try:
            bw, err = float(self.measure(s)), None
        except AioError as exc:  # one setting that crashes the op must not end the search
            bw, err = 0.0, str(exc).splitlines()[0]
        self.samples.setdefault(s, []).append(bw)
        self.history.append(Evaluation(s, bw, phase, self.elapsed(), err))
        return bw

    def score(self, s: AioSettings) -> float:
        return statistics.median(self.samples[s]) if s in self.samples else float("-inf")

    def has_time_for(self, reads: int) -> bool:
        return self.elapsed() + reads * self.mean_cost() <= self.budget_s


def _axis_line(s: AioSettings, axis: str, space: Space) -> list[AioSettings]:
    values = {"block_size": space.block_sizes, "queue_depth": space.queue_depths,
              "parallelism": space.parallelism}[axis]
    return [AioSettings(**{**asdict(s), axis: v}) for v in values]


def _cost(s: AioSettings) -> tuple[int, int, int]:
    return (s.parallelism, s.queue_depth, s.block_size)


def _descend(search: _Search, start: AioSettings, space: Space, margin: float, reserve: int) -> AioSettings:
    """Line searches along each axis from the incumbent until a full cycle leaves it in place."""
    incumbent = start
    moved = True
    while moved:
        moved = False
        for axis in ("parallelism", "queue_depth", "block_size"):
            for s in _axis_line(incumbent, axis, space):
                if s in search.samples:
                    continue
                if not search.has_time_for(1 + reserve):
                    return incumbent
                search.run(s, "descent")
            best = max(_axis_line(incumbent, axis, space), key=search.score)
            if search.score(best) > search.score(incumbent):
                # Follow any gain, even one inside the noise: a small step on one axis can open a large
                # one on another. Scores are cached, so this still ends; `margin` decides whether the
                # step earns another full cycle.
                moved = moved or search.score(best) > search.score(incumbent) * (1 + margin)
                incumbent = best
    return incumbent


def _confirm(search: _Search, finalists: list[AioSettings], rounds: int, tie: float) -> AioSettings:
    """Interleaved re-measurement of the finalists; returns the winner.

    Every round (the screening reads count as round 0) is scored relative to its own mean, since
    drift and contention (another job's I/O, burst credits running out) hit a whole round alike.
    Contenders are the finalists whose median confirmed score is within the noise (2 standard
    errors, at least `tie`) of the best; among them all rounds decide. Under contention every
    setting reads alike, so a tie seen only then is no evidence: the cheapest setting wins only
    a tie that holds over all rounds.
    """
    rel: dict[AioSettings, list[float]] = {s: [] for s in finalists}
    screen = {s: search.score(s) for s in finalists}
    screen_mean = statistics.fmean(screen.values()) or 1.0
    for r in range(rounds):
        if r > 0 and not search.has_time_for(len(finalists)):
            break
        order = finalists if r % 2 == 0 else finalists[::-1]  # ABBA: cancels a linear drift
        got = {s: search.run(s, "confirm") for s in order}
        mean = statistics.fmean(got.values()) or 1.0
        for s in finalists:
            rel[s].append(got[s] / mean)
    med = {s: statistics.median(v) for s, v in rel.items()}
    best = max(med.values())
    margin = max(tie, 2 * _standard_error(rel))
    contenders = [s for s in finalists if med[s] >= best - margin]
    overall = {s: statistics.fmean([screen[s] / screen_mean, *rel[s]]) for s in contenders}
    top = max(overall.values())
    return min((s for s in contenders if overall[s] >= top * (1 - tie)), key=_cost)


def _standard_error(rel: dict[AioSettings, list[float]]) -> float:
    """Standard error of one finalist's mean relative score, pooled over the finalists."""
    devs = [x - statistics.fmean(v) for v in rel.values() if len(v) > 1 for x in v]
    n = min(len(v) for v in rel.values())
    if n < 2 or not devs:
        return 0.0
    return (sum(d * d for d in devs) / (len(devs) - len(rel))) ** 0.5 / n ** 0.5


def search_best(measure: Measure, budget_s: float, *, space: Space = Space(), top_k: int = 4, rounds: int = 4,
                margin: float = 0.02, tie: float = 0.01,
                clock: Callable[[], float] = time.monotonic) -> tuple[AioSettings, _Search]:
    search = _Search(measure, budget_s, clock)
    # seeds outside the space (an 8 MiB block when the caller bounds the block size) are not candidates
    for s in (DEFAULT_SETTINGS, *(p for p in DS_NVME_TUNE_GRID if p.block_size in space.block_sizes)):
        search.run(s, "seed")
    start = max(search.samples, key=search.score)
    reserve = (top_k + 1) * rounds
    incumbent = _descend(search, start, space, margin, reserve)
    ranked = sorted(search.samples, key=search.score, reverse=True)
    finalists = list(dict.fromkeys([incumbent, *ranked[:top_k], DEFAULT_SETTINGS]))
    finalists = [s for s in finalists if search.score(s) > 0 or s == DEFAULT_SETTINGS]
    return _confirm(search, finalists, rounds, tie), search


def _confirmed_median(search: _Search, s: AioSettings) -> float:
    vals = [e.bw for e in search.history if e.settings == s and e.phase == "confirm"] or search.samples.get(s, [0.0])
    return float(statistics.median(vals))


def _result(best: AioSettings, search: _Search, method: str, file_size: int, space: Space) -> TuneResult:
    return TuneResult(best=best, block=best.block(), best_bw=_confirmed_median(search, best),
                      default_block=default_aio_block(), default_bw=_confirmed_median(search, DEFAULT_SETTINGS),
                      evaluations=len(search.history), distinct=len(search.samples), elapsed=search.elapsed(),
                      method=method, history=tuple(search.history), file_size=file_size, space_size=len(space))


def grid_search(measure: Measure, *, space: Space = Space(), repeat: int = 1,
                clock: Callable[[], float] = time.monotonic) -> TuneResult:
    """Exhaustive reference: every point `repeat` times (in passes, so drift spreads evenly)."""
    search = _Search(measure, float("inf"), clock)
    points = space.points()
    if DEFAULT_SETTINGS not in points:
        points.append(DEFAULT_SETTINGS)
    for _ in range(repeat):
        for s in points:
            search.run(s, "grid")
    best = max(search.samples, key=search.score)
    return _result(best, search, f"exhaustive grid, {repeat} read(s) per point", 0, space)


# ---- the real measurement ----------------------------------------------------------------------

def _check_memory(file_size: int) -> None:
    """The whole file is read into one page-locked buffer: keep it well inside free memory."""
    avail = mem_available()
    if avail is not None and file_size > avail // 2:
        raise ValueError(f"--file-size {file_size / GiB:.1f} GiB is more than half the available memory "
                         f"({avail / GiB:.1f} GiB): the read lands in one page-locked buffer; choose a smaller size")


def aio_measure(file: Path, timeout: float = 600.0) -> Measure:
    """A measure function: one full read of `file` through the shared aio worker."""
    def measure(s: AioSettings) -> float:
        return measure_read(file, s, repeat=1, timeout=timeout).bw
    return measure


def tune(target_dir: str | Path, budget_s: float, file_size: int, measure: Measure | None = None, *,
         file: Path | None = None, progress: Callable[[str], None] | None = None, **search_kw: Any) -> TuneResult:
    """Search the aio settings with the best read bandwidth on `target_dir` within about `budget_s`.

    Without `measure`, a `file_size` data file is written in a private subdirectory
    of the target (removed afterwards) unless `file` names one to read.
    """
    from pytest_nvme_ai.core.targets import TargetError, validate_target_dir

    try:
        root = validate_target_dir(target_dir)
    except TargetError as exc:
        raise ValueError(str(exc)) from None
    if budget_s <= 0:
        raise ValueError(f"budget {budget_s} s must be positive")
    if measure is not None:
        best, search = search_best(measure, budget_s, **search_kw)
        return _result(best, search, _method(search_kw), file_size, search_kw.get("space", Space()))
    size = file_size - file_size % (max(PARALLELISM) * 4 * KiB)  # every parallelism gets aligned slices
    if size <= 0:
        raise ValueError(f"file size {file_size} B is too small: use at least 64 KiB (e.g. --file-size 256M)")
    _check_memory(size)
    say = progress or (lambda m: None)
    private = root / f".nvme-ai-tune-{secrets.token_hex(4)}"
    lock_fd = None
    try:
        if file is None:
            private.mkdir()
            # Held while tuning: a pytest-nvme-ai session on this target sees a live user, not a leftover.
            lock_fd = os.open(private / ".session.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            file = private / "tune.bin"
            say(f"writing a {size / MiB:.0f} MiB test file in {private}")
            write_data_file(file, size)
        shared_worker(progress=say)
        say(f"searching (budget {budget_s:.0f} s)")
        best, search = search_best(aio_measure(file), budget_s, **search_kw)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if lock_fd is not None:
            os.close(lock_fd)
    return _result(best, search, _method(search_kw), size, search_kw.get("space", Space()))


def _method(kw: dict[str, Any]) -> str:
    return METHOD.format(k=kw.get("top_k", 4), rounds=kw.get("rounds", 4))


# ---- the ZeRO-Inference suite's `--nvme-ai-aio auto` -------------------------------------------

TUNED_AIO: CacheKey[TuneResult] = CacheKey("tuned_aio", "(target label) -> the tuner's result, tuned once per session")


def tuned_aio_block(target: "Target", recorder: "Recorder", measure: Measure | None = None,
                    max_block_size: int | None = None) -> dict[str, Any]:
    """The tuned aio block for this target, tuned once per session; extras go into the calling test.

    The tuner reads the session's shared data file of the profile's size (fio's, when it laid one out).
    `max_block_size` bounds the block sizes searched: DeepSpeed swaps a tensor only if it has at least
    max(1 MiB, block_size) bytes, so a larger block "wins" by offloading less. ZeRO-Inference passes the
    largest block that offloads the same tensors as DeepSpeed's default (equal offloaded bytes).
    """
    from pytest_nvme_ai.measure.aio.runner import ensure_data_file, register_shared_worker

    register_shared_worker(recorder.children)  # the tuner reads through the shared worker
    parts = (target.label,) if max_block_size is None else (target.label, max_block_size)
    res = recorder.session_cache.get(TUNED_AIO, *parts)
    if res is None:
        size, budget = recorder.profile.tune_file_bytes, recorder.profile.tune_budget_s
        if max_block_size is not None:
            blocks = tuple(b for b in BLOCK_SIZES if b <= max_block_size) or BLOCK_SIZES[:1]
            budget_kw: dict[str, Any] = {"space": Space(block_sizes=blocks)}
        else:
            budget_kw = {}
        if measure is None:
            from pytest_nvme_ai.measure.aio.runner import release_shared_worker

            file = ensure_data_file(target, size, recorder.session_cache)
            try:
                res = tune(target.workdir, budget, file.stat().st_size, file=file, **budget_kw)
            finally:
                release_shared_worker()  # its page-locked buffer would otherwise sit through the inference run
        else:
            res = tune(target.workdir, budget, size, measure=measure, **budget_kw)
        recorder.session_cache.put(TUNED_AIO, res, *parts)
    recorder.set_extra(TunerExtra.BLOCK, res.block)
    recorder.set_extra(TunerExtra.DEFAULT_BW, res.default_bw)
    recorder.set_extra(TunerExtra.TUNED_BW, res.best_bw)
    if max_block_size is not None:
        recorder.set_extra("tuned_aio_max_block", max_block_size)
    recorder.note(f"aio tuned on {target.path}: {res.best.label} {res.best_bw / 1e9:.2f} GB/s vs default "
                  f"{res.default_bw / 1e9:.2f} GB/s ({res.evaluations} reads, {res.elapsed:.0f} s)")
    return dict(res.block)


# ---- CLI -----------------------------------------------------------------------------------------

def _gb(bw: float) -> str:
    return f"{bw / 1e9:.2f} GB/s"


def format_report(res: TuneResult, target: str) -> str:
    key, ver = thread_key(), deepspeed_version()
    lines = [
        f"nvme-ai tune: {target} ({res.file_size / MiB:.0f} MiB file)",
        f"method: {res.method}",
        f"searched {res.distinct} of {res.space_size} settings with {res.evaluations} reads in {res.elapsed:.0f} s",
        f"best:    {res.best.label:<24} {_gb(res.best_bw)}",
        f"default: {DEFAULT_SETTINGS.label:<24} {_gb(res.default_bw)}  (DeepSpeed's aio defaults)",
        (f"gain:    {res.gain:.2f}x over the default on this target" if res.gain is not None
         else "gain:    unknown (the default setting's read failed on this target)"),
        "",
        "paste into your DeepSpeed config:",
        '"aio": ' + json.dumps(res.block, indent=2),
        "",
        NUM_THREADS_NOTE.format(key=key, version=ver or "(not installed)"),
    ]
    return "\n".join(lines)


def cli_tune(args: Any) -> int:
    from pytest_nvme_ai.measure.aio.runner import aio_missing_reason
    from pytest_nvme_ai.measure.fio.runner import parse_size

    from pytest_nvme_ai.core.targets import TargetError, validate_target_dir

    def say(message: str) -> None:
        print(f"nvme-ai tune: {message}", file=sys.stderr, flush=True)

    size = parse_size(args.file_size, "--file-size")
    try:  # refuse a bad target before spending seconds on loading the op
        validate_target_dir(args.target)
    except TargetError as exc:
        raise ValueError(str(exc)) from None
    try:
        reason = aio_missing_reason(progress=say)
        if reason:
            print(f"nvme-ai tune: error: {reason}", file=sys.stderr)
            return 2
        res = tune(args.target, args.budget, size, progress=say)
    except AioError as exc:
        print(f"nvme-ai tune: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C is an answer, not a crash: tune() has already removed its test file on the way out.
        print("nvme-ai tune: interrupted: nothing was tuned, and the test file was removed", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"target": str(Path(args.target).resolve()), **res.to_dict()}, indent=2))
    else:
        print(format_report(res, str(Path(args.target).resolve())))
    return 0
