"""ingress.app.tune_gc_for_serving: what exists at startup leaves the collector's generations."""

from __future__ import annotations

import gc

from kbroker.ingress.app import YOUNG_GENERATION_THRESHOLD, tune_gc_for_serving


def tracked(obj: object) -> bool:
    """In one of the collector's generations (frozen objects are in none)."""
    return any(o is obj for o in gc.get_objects())


def test_startup_objects_are_frozen_and_later_ones_are_not() -> None:
    startup = [1, 2]
    assert tracked(startup)
    thresholds = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_freeze_count() > 1000  # at least the imported modules' objects
        assert not tracked(startup)
        later = [3, 4]
        assert tracked(later)  # objects made while serving are collected as usual
        assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert tracked(startup)
