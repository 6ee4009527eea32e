"""The public metric names (DESIGN.md), one module per concern.

Each module here defines `METRICS: dict[str, MetricSpec]` and an `ORDER` (fio 10, aio 20,
ZeRO-Inference 30; a new concern takes a free number): a new concern's metrics are a new file,
picked up by itself. Units are base SI units (B, B/s, ns, s). The order of `CATALOG` is the order
the report lists metrics in. A name defined twice is an error at import, naming both modules.
"""
from __future__ import annotations

from pytest_nvme_ai.core.catalog.base import Better, MetricSpec, unit_domain
from pytest_nvme_ai.core.registry import submodules

__all__ = ["CATALOG", "OWNER", "Better", "MetricSpec", "domain_of"]


def _collect() -> tuple[dict[str, MetricSpec], dict[str, str]]:
    catalog: dict[str, MetricSpec] = {}
    owner: dict[str, str] = {}
    for mod in submodules(__name__, "METRICS"):
        concern = mod.__name__.rsplit(".", 1)[-1]
        for name, spec in mod.METRICS.items():
            if name in catalog:
                raise ImportError(f"metric {name!r} is defined twice: in catalog/{owner[name]}.py and "
                                  f"catalog/{concern}.py; a name means one thing")
            catalog[name] = spec
            owner[name] = concern
    return catalog, owner


CATALOG, OWNER = _collect()   # OWNER: metric name -> the catalog module (concern) that defines it


def domain_of(name: str, unit: str) -> tuple[float, float]:
    """(lowest, highest) value a sample of metric `name` in `unit` can take: the catalog entry's own
    domain, else its unit's (a custom metric with a known unit gets that unit's)."""
    spec = CATALOG.get(name)
    if spec is not None and spec.domain is not None and spec.unit == unit:
        return spec.domain
    return unit_domain(unit)
