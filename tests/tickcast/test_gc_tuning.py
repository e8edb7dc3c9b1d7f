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
