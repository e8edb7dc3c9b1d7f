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
