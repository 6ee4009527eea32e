"""The job a child runs: written by the parent, read by the child, through ONE pair of functions.

A job is the spec (as its JSON dict), the DeepSpeed config the parent built for the accelerator it
expects, that accelerator, the swap folder, and, for benchmarks only, how the dummy weights are drawn.
The one-shot child reads it from JOB.json (`read_job`); a persistent worker gets the same dict on its
request pipe (`Job.to_dict` / `Job.from_dict`). The child rebuilds the config when the parent guessed
the accelerator wrong (`config_for`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Job:
    spec: Mapping[str, Any] = field(hash=False)
    ds_config: Mapping[str, Any] | None = field(default=None, hash=False)
    accelerator: str | None = None
    nvme_path: str | None = None
    dummy_fill: str | None = None          # benchmarks only: another way of drawing the random weights

    def to_dict(self) -> dict[str, Any]:
        return {"spec": dict(self.spec), "ds_config": dict(self.ds_config) if self.ds_config is not None else None,
                "accelerator": self.accelerator, "nvme_path": self.nvme_path, "dummy_fill": self.dummy_fill}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Job":
        return cls(spec=d["spec"], ds_config=d.get("ds_config"), accelerator=d.get("accelerator"),
                   nvme_path=d.get("nvme_path"), dummy_fill=d.get("dummy_fill"))

    @property
    def test_hook(self) -> str | None:
        hook = self.spec.get("test_hook")
        return str(hook) if hook else None

    def config_for(self, accelerator: str, build: Callable[[str | None], Mapping[str, Any]]) -> Mapping[str, Any]:
        """The parent's config when it guessed this accelerator right; otherwise `build(nvme_path)` for this one."""
        if self.ds_config and self.accelerator == accelerator:
            return self.ds_config
        return build(self.nvme_path)


def write_job(path: Path, job: Job) -> Path:
    path.write_text(json.dumps(job.to_dict(), indent=2), encoding="utf-8")
    return path


def read_job(path: Path) -> Job:
    return Job.from_dict(json.loads(path.read_text(encoding="utf-8")))
