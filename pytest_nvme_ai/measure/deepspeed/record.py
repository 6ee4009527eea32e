"""The child's report of one run: ONE typed record on both sides of the pipe (any process).

The child builds it and writes `to_dict()` (RESULT.json for a one-shot child, a "result" event for a
persistent worker); the parent reads it back with `from_dict()` and never looks a field up by a string
key. pyperf's `Run` is the model: a frozen dataclass that knows its own JSON form.

`ChildRecord` holds what every DeepSpeed workload reports; a workload subclasses it with its own
measurements (`zero_inference.record.InferenceRecord`, `zero_infinity.record.TrainingRecord`) and
names in `NESTED` the fields whose items are dataclasses with their own `from_dict`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from pytest_nvme_ai.measure.deepspeed.outcome import is_oom

R = TypeVar("R", bound="ChildRecord")


@dataclass(frozen=True)
class ChildRecord:
    """What a child says about its run; `outcome` is ok | oom | error (only the parent says timeout)."""

    outcome: str
    error: str | None = None
    accelerator: str | None = None
    dtype: str | None = None
    ds_config: Mapping[str, Any] | None = field(default=None, hash=False)
    versions: Mapping[str, Any] = field(default_factory=dict, hash=False)
    device_name: str | None = None
    init_seconds: float | None = None
    init_read_bytes: int | None = None
    model_params: int | None = None
    swap_files: tuple[Mapping[str, Any], ...] = ()   # DeepSpeed's *.swp files, listed after the engine's init

    NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}   # field -> how one item is read back

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name, value in d.items():
            if isinstance(value, tuple):
                d[name] = list(value)
        return d

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        """The record from its JSON form; keys this version does not know are ignored (an older child)."""
        names = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in names}
        for name, value in kw.items():
            if isinstance(value, list):
                read = cls.NESTED.get(name)
                kw[name] = tuple(read(x) for x in value) if read else tuple(value)
        return cls(**kw)

    @classmethod
    def failed(cls: type[R], exc: BaseException) -> R:
        """The record of a run that raised: oom or error, with the exception's text."""
        return cls(outcome="oom" if is_oom(exc) else "error", error=f"{type(exc).__name__}: {exc}")
