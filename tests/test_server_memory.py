"""The garbage collector's settings for serving (gateway.server.settle_memory)."""

from __future__ import annotations

import gc

from gateway.server import GC_THRESHOLD, settle_memory


def test_settling_freezes_what_start_up_built_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        settle_memory()
        assert gc.get_freeze_count() > 0  # everything alive now: a full collection skips it
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])  # older generations as they were
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
