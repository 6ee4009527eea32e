"""Progress of a long ZeRO-Inference case: which case, which stage, loops done / total, time left.

A full-profile case on a GPU runs for many minutes (OPT-66B: a build of its swap files, then loops
of minutes each). The worker reports every build, warm-up and measured loop; `CaseProgress` turns
those into one line each, e.g.

    nvme-ai: [3/12] opt-13b-bs32-nvme-q4-kv: loop 2/5 (41.2 s), about 2m04s left in this case

The estimate is the mean of this case's steps so far times the steps left (warm-up loops count as
steps: they take as long as measured ones). Where the line goes is the caller's choice: the plugin
writes it to the terminal only at `-v` and above, so `-q` and captured output are unchanged.
"""
from __future__ import annotations

from typing import Callable


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class CaseProgress:
    """Callable the engine pool feeds with (stage, done, total, seconds of that step)."""

    def __init__(self, label: str, warmup: int, loops: int, say: Callable[[str], None],
                 position: str | None = None) -> None:
        self.label = f"[{position}] {label}" if position else label
        self.warmup, self.loops = warmup, loops
        self.say = say
        self.step_seconds: list[float] = []

    @property
    def steps_left(self) -> int:
        return self.warmup + self.loops - len(self.step_seconds)

    def eta(self) -> float | None:
        if not self.step_seconds:
            return None
        return sum(self.step_seconds) / len(self.step_seconds) * self.steps_left

    def __call__(self, stage: str, done: int, total: int, seconds: float) -> None:
        if stage == "build":
            if done == 0:
                self.say(f"{self.label}: building the engine (random weights, swap files)")
            else:
                self.say(f"{self.label}: engine built in {format_duration(seconds)}")
            return
        self.step_seconds.append(seconds)
        name = "warm-up" if stage == "warmup" else "loop"
        eta = self.eta()
        left = f", about {format_duration(eta)} left in this case" if eta and self.steps_left else ""
        self.say(f"{self.label}: {name} {done}/{total} ({seconds:.1f} s){left}")
