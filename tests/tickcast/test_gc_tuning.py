import gc

from tickcast.gc_tuning import tune_gc


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds() -> None:
    before = gc.get_threshold()
    try:
        marker = [object() for _ in range(10)]  # lives across the freeze
        tune_gc(threshold0=12_345, threshold1=7, threshold2=9)
        assert gc.get_threshold() == (12_345, 7, 9)
        assert gc.get_freeze_count() > len(marker)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_collection_paused_restores_the_collector_after_nested_and_concurrent_regions() -> None:
    import threading

    from tickcast.gc_tuning import collection_paused

    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer region is still open
    assert gc.isenabled()

    # regions of two threads overlapping: the collector comes back once the last one ends
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with collection_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with collection_paused():
        thread.start()
        assert entered.wait(5)
    assert not gc.isenabled()  # the other thread's region is open
    release.set()
    thread.join(5)
    assert gc.isenabled()

    # a collector someone turned off stays off; an exception inside still closes the region
    gc.disable()
    try:
        try:
            with collection_paused():
                raise ValueError("boom")
        except ValueError:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_no_collection_runs_inside_a_paused_region() -> None:
    from tickcast.gc_tuning import collection_paused

    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    before = gc.get_threshold()
    gc.collect()  # young generation empty: nothing but the region's allocations counts
    gc.callbacks.append(count)
    try:
        gc.set_threshold(100)
        with collection_paused():
            batch = [[i] for i in range(10_000)]  # 100x the threshold of tracked objects
            del batch
        assert runs == []
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*before)


def test_tune_gc_without_collect_freezes_without_a_collection() -> None:
    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    before = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        tune_gc(threshold0=54_321, collect=False)
        assert runs == []
        assert gc.get_threshold()[0] == 54_321
        assert gc.get_freeze_count() > 0
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()
        gc.set_threshold(*before)


# --- idle collections (live) -------------------------------------------------------------------


class _Runs:
    """The collections that start while it is installed, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.generations: list[int] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.generations.append(info["generation"])

    def __enter__(self) -> "_Runs":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _young_objects(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]  # n tracked containers, alive while the list is


def test_an_idle_flow_collects_the_young_generation_once_it_has_been_quiet() -> None:
    import time

    from tickcast.gc_tuning import IdleCollector

    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10_000_000)  # no automatic collection in the test's way
    try:
        collector = IdleCollector(min_young=1_000, quiet_s=0.3)  # generous: a loaded CI box
        kept = _young_objects(5_000)
        with _Runs() as runs:
            collector.touch()
            collector.quiet()  # right after activity: not idle yet
            assert runs.generations == []
            time.sleep(0.35)
            collector.quiet()  # quiet for longer than quiet_s: the young generation is collected
            assert runs.generations == [0]
            assert collector.collections == 1
            assert gc.get_count()[0] < 1_000  # the survivors moved on to the next generation
            collector.quiet()  # too few young objects left: nothing to do
            assert runs.generations == [0]
        del kept
    finally:
        gc.set_threshold(*before)


def test_idle_collections_wait_for_due_notifications_and_respect_a_paused_collector() -> None:
    import time

    from tickcast.gc_tuning import IdleCollector, collection_paused

    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10_000_000)
    try:
        collector = IdleCollector(min_young=1_000, quiet_s=0.0)
        step = object()
        kept = _young_objects(5_000)
        with _Runs() as runs:
            collector.due(step, True)  # a stateful step's side work is due now: not idle
            collector.quiet()
            with collection_paused():  # a region that must not be collected in
                collector.due(step, False)
                collector.quiet()
            assert runs.generations == []
            time.sleep(0.001)
            collector.quiet()
            assert runs.generations == [0]
        del kept
    finally:
        gc.set_threshold(*before)


def test_the_due_generation_follows_cpythons_policy() -> None:
    from tickcast.gc_tuning import _due_generation

    thresholds = (1_000_000, 50, 100)
    assert _due_generation((5_000, 3, 7), thresholds) == 0
    assert _due_generation((5_000, 50, 7), thresholds) == 1  # 50 young collections since the last older one
    assert _due_generation((5_000, 50, 100), thresholds) == 2
    assert _due_generation((5_000, 3, 500), thresholds) == 0  # the oldest only after the middle one is due


def test_an_empty_live_queue_poll_collects_when_the_flow_is_idle() -> None:
    """The in-process queue's partition (embedded mode) reports to the process's collector:
    a poll that delivers is activity, an empty one after a quiet spell collects."""
    import queue
    import time

    from dataflows.sources import QueueSource
    from tickcast.gc_tuning import idle_collector

    before = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10_000_000)
    q: queue.Queue[object] = queue.Queue()
    part = QueueSource(q, max_batch=10).build_part("input", "http", None)
    quiet_s, idle_collector.quiet_s = idle_collector.quiet_s, 0.3  # generous: a loaded CI box
    try:
        q.put(("http", b"{}", None))
        with _Runs() as runs:
            kept = _young_objects(idle_collector.min_young * 3)
            assert part.next_batch()  # a record: activity
            part.next_batch()  # empty right after it: not yet quiet
            assert runs.generations == []
            time.sleep(idle_collector.quiet_s * 2)
            assert part.next_batch() == []
            assert runs.generations == [0]
            del kept
    finally:
        idle_collector.quiet_s = quiet_s
        gc.set_threshold(*before)


def test_a_live_stateful_step_is_activity_and_holds_idle_collections_while_its_work_is_due() -> None:
    from datetime import UTC, datetime

    from bytewax.operators import StatefulBatchLogic

    from dataflows.signals import _Busy
    from tickcast.gc_tuning import idle_collector

    class Step(StatefulBatchLogic[int, int, None]):
        due: datetime | None = None

        def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
            return values, StatefulBatchLogic.RETAIN

        def notify_at(self) -> datetime | None:
            return self.due

        def snapshot(self) -> None:
            return None

    touches: list[str] = []
    inner = Step()
    step = _Busy(inner, lambda: touches.append("touch"))
    assert step.on_batch([1, 2]) == ([1, 2], StatefulBatchLogic.RETAIN)
    assert touches == ["touch", "touch"]  # at the start and at the end of the activation
    inner.due = datetime.now(UTC)
    step.notify_at()
    assert id(step) in idle_collector._due  # side work due now: the flow is not idle
    inner.due = None
    step.notify_at()
    assert id(step) not in idle_collector._due
