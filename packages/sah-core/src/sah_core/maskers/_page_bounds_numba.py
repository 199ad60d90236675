"""numba kernel of :func:`sah_core.maskers.quest.merge_page_bounds` (imported on first use).
Module-level so that ``cache=True`` keeps the machine code."""

from __future__ import annotations

from typing import Any

from numba import njit


@njit(cache=True, nogil=True)
def merge_bounds(low: Any, high: Any, keys: Any, pages: Any) -> None:
    """``low[b, h, p] = min(low[b, h, p], keys[b, h, j])`` (and ``high`` with max) for
    every key ``j`` of page ``p = pages[b or 0, j]``, element-wise; a NaN key makes the
    bound NaN, as ``scatter_reduce_`` does."""
    batch, heads, count, dim = keys.shape
    shared = pages.shape[0] == 1
    for b in range(batch):
        row = pages[0] if shared else pages[b]
        for h in range(heads):
            for j in range(count):
                p = row[j]
                key = keys[b, h, j]
                page_low = low[b, h, p]
                page_high = high[b, h, p]
                for d in range(dim):
                    x = key[d]
                    if x < page_low[d] or x != x:
                        page_low[d] = x
                    if x > page_high[d] or x != x:
                        page_high[d] = x
