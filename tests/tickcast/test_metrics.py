import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from tickcast.metrics import observe_many


def _buckets(registry: CollectorRegistry) -> dict[str, float]:
    return {s.labels.get("le", s.name): s.value for m in registry.collect() for s in m.samples
            if s.name.endswith(("_bucket", "_count"))}


def test_observe_many_equals_one_observe_per_value() -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lat", "x", buckets=(1, 5, 10, 100), registry=one)
    h2 = Histogram("lat", "x", buckets=(1, 5, 10, 100), registry=many)
    values = np.random.default_rng(0).exponential(20, 1000)
    values[:4] = [1.0, 5.0, 1e6, 0.0]  # on a bound, above every bound, zero
    for v in values:
        h1.observe(v)
    observe_many(h2, values)
    assert _buckets(one) == _buckets(many)
    assert h2._sum.get() == pytest.approx(h1._sum.get(), rel=1e-12)


def test_observe_many_empty_is_a_no_op() -> None:
    reg = CollectorRegistry()
    h = Histogram("lat", "x", buckets=(1,), registry=reg)
    observe_many(h, [])
    assert _buckets(reg)["lat_count"] == 0
