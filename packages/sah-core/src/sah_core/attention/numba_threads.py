"""Running parallel numba kernels next to torch's own threads.

numba's workqueue threading layer is fork-safe and adds no second OpenMP runtime next to
torch's, but it must not be entered by two threads at once: parallel calls from several
Python threads take turns on one lock. Each parallel call uses as many threads as torch.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

#: Problems below this many elements run on the calling thread: a parallel launch costs
#: ~100-150 us, more than a decode step's rows (the results are the same either way).
PARALLEL_MIN_ELEMENTS = 1 << 18

_BUSY = threading.Lock()


def choose_threading_layer() -> None:
    """Select the workqueue layer (before numba is first imported; a user's choice wins)."""
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")


@contextlib.contextmanager
def parallel_section() -> Iterator[int]:
    """Hold the parallel-call lock with numba set to torch's thread count (yielded)."""
    import numba
    import torch

    with _BUSY:
        available = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        threads = max(1, min(torch.get_num_threads(), available))
        numba.set_num_threads(threads)
        yield threads
