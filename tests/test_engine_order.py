"""Engine-sharing cases run together (run/order.py); unmarked tests keep their place."""
from __future__ import annotations

import pytest

from pytest_nvme_ai.run.order import greedy_order


def test_quick_grid_order_builds_each_engine_once() -> None:
    # singles: s1 nvme-16 (A), s2 nvme-4 (B), s3 none (C), s4 kv (A: KV offload is per case); pairs: A + cpu (D)
    items = ["s1", "s2", "s3", "s4", "p1", "p2"]
    engines = [("A",), ("B",), ("C",), ("A",), ("A", "D"), ("A", "D")]
    order = greedy_order(items, engines, alive=2)
    assert order == ["s1", "s4", "p1", "p2", "s2", "s3"]
    builds, alive = 0, []
    for name in order:
        for key in engines[items.index(name)]:
            if key not in alive:
                builds += 1
            alive = [k for k in alive if k != key][-1:] + [key]
    assert builds == 4  # one per distinct engine


def test_order_is_stable_without_sharing() -> None:
    assert greedy_order(list("abc"), [("A",), ("B",), ("C",)]) == list("abc")


def test_marked_items_move_only_within_their_slots(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
        from pytest_nvme_ai.run.order import engine_order
        def pytest_collection_modifyitems(items):
            items[:] = engine_order(items)
    ''')
    pytester.makepyfile(test_a='''
        import pytest
        def test_first(): pass
        @pytest.mark.nvme_ai_engines("A")
        def test_a1(): pass
        @pytest.mark.nvme_ai_engines("B")
        def test_b1(): pass
        def test_middle(): pass
        @pytest.mark.nvme_ai_engines("A")
        def test_a2(): pass
    ''')
    result = pytester.runpytest("-p", "no:nvme_ai", "--collect-only", "-q", "-W", "ignore::pytest.PytestUnknownMarkWarning")
    result.stdout.fnmatch_lines(["test_a.py::test_first", "test_a.py::test_a1", "test_a.py::test_a2",
                                 "test_a.py::test_middle", "test_a.py::test_b1"])
