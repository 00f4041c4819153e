"""ingress.app.freeze_startup_heap: what exists at startup leaves the collector's generations."""

from __future__ import annotations

import gc

from ingress.app import freeze_startup_heap


def tracked(obj: object) -> bool:
    """In one of the collector's generations (frozen objects are in none)."""
    return any(o is obj for o in gc.get_objects())


def test_startup_objects_are_frozen_and_later_ones_are_not() -> None:
    startup = [1, 2]
    assert tracked(startup)
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000  # at least the imported modules' objects
        assert not tracked(startup)
        later = [3, 4]
        assert tracked(later)  # objects made while serving are collected as usual
    finally:
        gc.unfreeze()
    assert tracked(startup)
