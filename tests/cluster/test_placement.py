"""Where the flow's parts run in a cluster (`dataflows.placement`), and the recovery store's
shape check. The routing rule is checked against a real multi-worker Bytewax run."""

from __future__ import annotations

import threading
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from dataflows.placement import Placement, ProcessShare, bytewax_worker_of, key_routed_to
from dataflows.signals import CLUSTER_FILE, RecoveryMismatch, prepare_recovery


class _Seen(DynamicSink[str]):
    """Records which worker each item reached (a dynamic sink writes on the worker it is on)."""

    def __init__(self) -> None:
        self.worker: dict[str, int] = {}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[str]:
        seen = self.worker

        class Part(StatelessSinkPartition[str]):
            def write_batch(self, items: list[str]) -> None:
                for key in items:
                    seen[key] = worker_index

        return Part()


@pytest.mark.parametrize("workers", [2, 3])
def test_the_routing_rule_is_bytewaxs(workers: int) -> None:
    keys = [f"shard-{i:02d}" for i in range(16)] + [f"kafka:p{i}" for i in range(8)] + ["model", "live"]
    keys += [key_routed_to(w, workers, base="model") for w in range(workers)]
    sink = _Seen()
    flow = Dataflow("routing")
    stream = op.input("in", flow, TestingSource([(k, 1) for k in keys]))
    stateful = op.stateful_map("state", stream, lambda state, value: (None, value))
    op.output("out", op.map("key", stateful, lambda kv: kv[0]), sink)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert sink.worker == {k: bytewax_worker_of(k, workers) for k in keys}
    for w in range(workers):
        assert sink.worker[key_routed_to(w, workers, base="model")] == w


def test_a_single_process_keeps_its_keys_and_partitions() -> None:
    one = Placement()
    assert one.pin("shard-03") == "shard-03" and one.model_key() == "model"
    assert one.store_parts() == ["store"] and one.live_parts() == ["live"] and one.owns_store


def test_chdb_parts_live_on_process_0_and_server_parts_everywhere() -> None:
    chdb = [Placement(process_id=k, processes=2) for k in range(2)]
    assert [p.store_parts() for p in chdb] == [["store"], []]
    assert [p.live_parts() for p in chdb] == [["live"], []]
    assert [p.owns_store for p in chdb] == [True, False]
    server = [Placement(process_id=k, processes=3, shared_store=True) for k in range(3)]
    assert all(p.store_parts() == ["store", "store-1", "store-2", "store-3"] for p in server)
    assert all(p.live_parts() == ["live"] and p.owns_store for p in server)
    # The names do not depend on the cluster's size (a resume may re-assign them).
    assert Placement(shared_store=True).store_parts() == server[0].store_parts()


def test_pinned_keys_stay_on_their_process_and_differ_between_processes() -> None:
    for workers_per_process in (1, 2):
        places = [Placement(process_id=k, processes=2, workers_per_process=workers_per_process) for k in range(2)]
        for shard in (f"shard-{i:02d}" for i in range(16)):
            pinned = [p.pin(shard) for p in places]
            assert pinned[0] != pinned[1]
            for k, key in enumerate(pinned):
                worker = bytewax_worker_of(key, 2 * workers_per_process)
                assert worker // workers_per_process == k
        assert bytewax_worker_of(places[1].model_key(), 2 * workers_per_process) == 0


def test_source_partitions_are_dealt_out_by_process() -> None:
    class Source:
        def list_parts(self) -> list[str]:
            return [f"p{i}" for i in (10, 2, 0, 1, 3, 11, 9, 8, 7, 6, 5, 4)]

    shares = [ProcessShare(Source(), Placement(process_id=k, processes=3)).list_parts() for k in range(3)]  # type: ignore[arg-type]
    assert shares == [["p0", "p3", "p6", "p9"], ["p1", "p4", "p7", "p10"], ["p2", "p5", "p8", "p11"]]


def test_placement_refuses_an_impossible_cluster() -> None:
    with pytest.raises(ValueError, match="outside a cluster of 2"):
        Placement(process_id=2, processes=2)


def test_the_recovery_store_is_created_once_and_refused_to_another_shape(tmp_path: Path) -> None:
    two = [Placement(process_id=k, processes=2) for k in range(2)]
    path = tmp_path / "recovery" / "signals"
    errors: list[BaseException] = []

    def start(placement: Placement) -> None:
        try:
            prepare_recovery(path, placement=placement)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in two]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(f.name for f in path.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3", CLUSTER_FILE]
    assert not [f for f in path.parent.iterdir() if f.name.startswith(".")], "no half-built store left"
    prepare_recovery(path, placement=two[1])  # the same shape resumes
    with pytest.raises(RecoveryMismatch, match="2 process\\(es\\) × 1 worker\\(s\\), this one is 1 × 1"):
        prepare_recovery(path, placement=Placement())
    with pytest.raises(RecoveryMismatch, match="this one is 3 × 1"):
        prepare_recovery(path, placement=Placement(process_id=0, processes=3))
