"""core.cache: typed session-cache entries, named once by the module that writes them."""
from __future__ import annotations

from pathlib import Path

from pytest_nvme_ai.core.cache import CacheKey, SessionCache
from pytest_nvme_ai.measure.fio.runner import BEST_FIO_BW, FIO_BW, FIO_DATA


def test_entries_are_kept_apart_by_key_and_parts(tmp_path: Path) -> None:
    c = SessionCache()
    assert c.get(FIO_BW, "t", 4096) is None and not c.has(FIO_BW, "t", 4096)
    assert c.put(FIO_BW, 1.5e9, "t", 4096) == 1.5e9
    c.put(BEST_FIO_BW, 2e9, "t")
    c.put(FIO_DATA, tmp_path / "f", "t", 4096)
    assert c.get(FIO_BW, "t", 4096) == 1.5e9 and c.get(FIO_BW, "t", 8192) is None and c.get(FIO_BW, "u", 4096) is None
    assert c.get(BEST_FIO_BW, "t") == 2e9 and c.get(FIO_DATA, "t", 4096) == tmp_path / "f"
    assert len(c) == 3


def test_setdefault_makes_once() -> None:
    c = SessionCache()
    calls: list[int] = []

    def make() -> list[int]:
        calls.append(1)
        return []

    key = CacheKey[list[int]]("things")
    first = c.setdefault(key, make, "x")
    assert c.setdefault(key, make, "x") is first and calls == [1]


def test_key_names_are_unique_across_the_package() -> None:
    # Two writers picking the same name would read each other's values.
    from pytest_nvme_ai.measure.aio.tune import TUNED_AIO
    from pytest_nvme_ai.measure.fio import runner as fio_runner
    from pytest_nvme_ai.measure.zero_inference.runner import INFERENCE_RUNS

    keys = [v for v in vars(fio_runner).values() if isinstance(v, CacheKey)] + [TUNED_AIO, INFERENCE_RUNS]
    assert len({k.name for k in keys}) == len(keys) >= 6
