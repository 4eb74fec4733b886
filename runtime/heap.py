"""Keep the garbage collector's full passes short in long-running processes.

A full (generation 2) collection walks every tracked object. In a service process
almost all of them are the modules, classes and functions loaded at startup, which
never become garbage: with them walked, full passes took 100-210 ms in every pipeline
service (bench/pipeline, measured with gc.callbacks), and an invoice caught behind
one waited that long. Frozen, they are left out of every later collection.
"""

from __future__ import annotations

import gc


def freeze_live_objects() -> None:
    """What is alive now is kept out of every later collection (and never freed).

    Services call it once, after startup's imports; a benchmark's driver before each
    measured run, so that what the last run left does not pause the next.
    """
    gc.collect()
    gc.freeze()
