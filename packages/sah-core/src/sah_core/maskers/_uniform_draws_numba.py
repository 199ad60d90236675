"""numba kernels of :mod:`sah_core.maskers.uniform_draws` (imported on first use: numba is
slow to import). Module-level functions so that ``cache=True`` keeps the machine code.

Every row has its own random stream: SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) started from a hash of the call's seed and the
row number, so rows are independent of each other and of how many rows a call has. A row's
sample is drawn with Floyd's algorithm (Bentley and Floyd, "Programming Pearls: A sample of
brilliance", CACM 30(9), 1987): ``count`` random integers give a uniform ``count``-subset,
marked in a flag array and emitted in ascending key order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_LOW_32 = np.uint64(0xFFFFFFFF)
_TWO_32 = np.uint64(0x100000000)


@njit(inline="always", cache=True)
def mix(z: Any) -> Any:
    """SplitMix64's output function (a bijection of uint64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True)
def row_state(seed: Any, row: int) -> Any:
    """The first state of row ``row``'s stream."""
    return mix(seed ^ mix(np.uint64(row) * _GOLDEN + _GOLDEN))


@njit(inline="always", cache=True)
def below(state: Any, bound: Any) -> Any:
    """``(new state, r)`` with ``r`` uniform on ``[0, bound)`` exactly, ``0 < bound < 2**32``
    (Lemire's multiply-shift with rejection: "Fast random integer generation in an
    interval", ACM TOMACS 29(1), 2019)."""
    threshold = (_TWO_32 - bound) % bound
    while True:
        state = state + _GOLDEN
        product = (mix(state) >> np.uint64(32)) * bound
        if (product & _LOW_32) >= threshold:
            return state, np.int64(product >> np.uint64(32))


@njit(inline="always", cache=True)
def floyd(state: Any, size: int, count: int, chosen: Any) -> None:
    """Marks a uniform ``count``-subset of ``0 .. size - 1`` in ``chosen[:size]`` (cleared)."""
    for j in range(size - count, size):
        state, t = below(state, np.uint64(j + 1))
        if chosen[t]:
            t = j
        chosen[t] = True


@njit(cache=True, nogil=True)
def draw_range_rows(seed: Any, lo: int, size: int, counts: Any, out: Any) -> None:
    """Row ``r`` of ``out [R, W]``: ``counts[r]`` keys of ``lo .. lo + size - 1`` drawn
    uniformly without replacement, ascending, then -1."""
    chosen = np.zeros(size, np.bool_)
    width = out.shape[1]
    for r in range(out.shape[0]):
        count = min(max(counts[r], 0), size, width)
        chosen[:] = False
        floyd(row_state(seed, r), size, count, chosen)
        filled = 0
        for pos in range(size):
            if chosen[pos]:
                out[r, filled] = lo + pos
                filled += 1
        out[r, filled:] = -1


@njit(cache=True, nogil=True)
def draw_population_rows(seed: Any, population: Any, counts: Any, out: Any) -> Any:
    """Row ``r`` of ``out [R, W]``: ``counts[r]`` of the keys where ``population[r]`` is True
    drawn uniformly without replacement, ascending, then -1; returns the most keys a row got.
    A population that is the range ``lo .. lo + size - 1`` gives exactly
    :func:`draw_range_rows`'s keys (same streams)."""
    key_len = population.shape[1]
    chosen = np.zeros(key_len, np.bool_)
    members = np.empty(key_len, np.int64)
    width = out.shape[1]
    widest = 0
    for r in range(out.shape[0]):
        size: Any = 0
        for j in range(key_len):
            members[size] = j
            size += np.int64(population[r, j])
        count = min(max(counts[r], 0), size, width)
        chosen[:size] = False
        floyd(row_state(seed, r), size, count, chosen)
        filled = 0
        for pos in range(size):
            if chosen[pos]:
                out[r, filled] = members[pos]
                filled += 1
        out[r, filled:] = -1
        widest = max(widest, filled)
    return widest


@njit(cache=True, nogil=True)
def population_sizes(population: Any, out: Any) -> None:
    """``out[r]`` = the number of True entries of row ``r`` of ``population [R, K]``."""
    for r in range(population.shape[0]):
        row = population[r]
        n: Any = 0
        for j in range(row.shape[0]):
            n += np.int64(row[j])
        out[r] = n
