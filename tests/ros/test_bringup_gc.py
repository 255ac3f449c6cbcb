"""Once the nodes are up, what the start-up left alive is frozen out of the garbage collector's passes, so a full
collection no longer walks it while every callback waits; what is allocated afterwards is still collected."""

from __future__ import annotations

import gc
import weakref

from trusted_scene_graph.ros.bringup import startup_objects_frozen


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_start_up_objects_are_frozen_within_the_block_and_unfrozen_after_it():
    loaded = _Cycle()  # alive at the start: frozen with the rest
    with startup_objects_frozen():
        assert gc.get_freeze_count() > 0
        assert not any(obj is loaded for obj in gc.get_objects())  # frozen objects are not listed
        garbage = _Cycle()
        garbage_ref = weakref.ref(garbage)
        del garbage
        gc.collect()
        assert garbage_ref() is None  # allocated after the freeze: collected as usual
    assert gc.get_freeze_count() == 0
    assert any(obj is loaded for obj in gc.get_objects())
