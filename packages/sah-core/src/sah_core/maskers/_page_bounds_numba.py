"""numba kernel of :func:`sah_core.maskers.quest.merge_page_bounds` (imported on first use).
Module-level so that ``cache=True`` keeps the machine code."""

from __future__ import annotations

from typing import Any

from numba import njit


@njit(cache=True, nogil=True)
def merge_bounds(low: Any, high: Any, keys: Any, heads: int, pitch: int, pages: Any) -> None:
    """``low[b, h, p] = min(low[b, h, p], key j)`` (and ``high`` with max) for every key
    ``j < pages.shape[1]`` of page ``p = pages[b or 0, j]``, element-wise; a NaN key makes
    the bound NaN, as ``scatter_reduce_`` does. ``keys`` holds the keys as contiguous rows:
    key ``j`` of ``(b, h)`` is row ``(b * heads + h) * pitch + j``."""
    batch, dim = low.shape[0], low.shape[3]
    shared = pages.shape[0] == 1
    for b in range(batch):
        row = pages[0] if shared else pages[b]
        for h in range(heads):
            base = (b * heads + h) * pitch
            for j in range(row.shape[0]):
                key = keys[base + j]
                page_low = low[b, h, row[j]]
                page_high = high[b, h, row[j]]
                for d in range(dim):
                    x = key[d]
                    nan = x != x
                    page_low[d] = x if (x < page_low[d]) | nan else page_low[d]
                    page_high[d] = x if (x > page_high[d]) | nan else page_high[d]
