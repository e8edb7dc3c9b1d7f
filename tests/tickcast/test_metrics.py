import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from tickcast.metrics import observe_many


def _buckets(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.labels.get("le", s.name): s.value
        for m in registry.collect()
        for s in m.samples
        if s.name.endswith(("_bucket", "_count"))
    }


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


def test_bulk_recorded_tick_metrics_are_complete_at_every_scrape() -> None:
    import numpy as np
    import pyarrow as pa
    from prometheus_client import generate_latest

    from tickcast import metrics

    def sample(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before_n = sample("sentiment_ingest_latency_ms_count")
    before_le5 = sample("sentiment_ingest_latency_ms_bucket", le="5.0")
    before_p = sample("sentiment_ingest_total", provider="bulk-test")
    # what the flow queues: a batch's ingest_ts and ts, and which ticks were accepted
    ts = np.full(5, 1_763_683_200_000, np.int64)
    metrics.TICK_LATENCIES.add((ts + np.array([1, 3, 7, 900, 2]), ts, np.array([True, True, True, True, False])))
    metrics.TICK_PROVIDERS.add(pa.chunked_array([["bulk-test", "other"], ["bulk-test"]]))
    metrics.TICK_PROVIDERS.add(["bulk-test", "other"])  # the per-record path queues plain lists
    text = generate_latest().decode()  # a scrape: everything queued is recorded first
    assert 'sentiment_ingest_total{provider="bulk-test"}' in text
    assert sample("sentiment_ingest_latency_ms_count") - before_n == 4
    assert sample("sentiment_ingest_latency_ms_bucket", le="5.0") - before_le5 == 2  # 1 and 3 (an independent count)
    assert sample("sentiment_ingest_total", provider="bulk-test") - before_p == 3
