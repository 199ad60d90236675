"""numba kernels of Quest's page selection (:mod:`sah_core.maskers.quest`, imported on first
use). Module-level so that ``cache=True`` keeps the machine code.

``eligible`` is a bool ``[B, H, Q, L]`` array of any strides (an expanded view is read as is)
and ``slots`` the page of every key ``[B | 1, L]`` (the dump slot for padded keys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def candidate_pages(eligible: Any, slots: Any, candidate: Any) -> None:
    """``candidate[b, h, i, p] = True`` for every page ``p`` holding an eligible key of row
    ``(b, h, i)`` (``candidate`` comes in all False, with the dump slot as its last column)."""
    batch, heads, rows, limit = eligible.shape
    shared = slots.shape[0] == 1
    for b in range(batch):
        page_of = slots[0] if shared else slots[b]
        for h in range(heads):
            for i in range(rows):
                row = eligible[b, h, i]
                marks = candidate[b, h, i]
                for j in range(limit):
                    if row[j]:
                        marks[page_of[j]] = True


@njit(cache=True, nogil=True)
def chosen_page_keys(eligible: Any, slots: Any, order: Any, ok: Any, pages: int) -> Any:
    """Index form ``[B, H, Q, W]`` (ascending, -1 padded, ``W`` the longest row) of the
    eligible keys in the pages ``order[b, h, i, t]`` with ``ok[b, h, i, t]`` (``pages``:
    number of page slots, dump slot included)."""
    batch, heads, rows, limit = eligible.shape
    shared = slots.shape[0] == 1
    chosen = np.zeros(pages, np.bool_)
    # one pass over the keys; the kept ones (a few pages' worth per row) are held until the
    # widest row is known
    starts = np.zeros(batch * heads * rows + 1, np.int64)
    held = np.empty(max(1024, 4 * limit), np.int64)
    n = 0
    r = 0
    for b in range(batch):
        page_of = slots[0] if shared else slots[b]
        for h in range(heads):
            for i in range(rows):
                picks, fine, row = order[b, h, i], ok[b, h, i], eligible[b, h, i]
                chosen[:] = False
                for t in range(picks.shape[0]):
                    if fine[t]:
                        chosen[picks[t]] = True
                if n + limit > held.shape[0]:
                    grown = np.empty(2 * (n + limit), np.int64)
                    grown[:n] = held[:n]
                    held = grown
                for j in range(limit):
                    if row[j] and chosen[page_of[j]]:
                        held[n] = j
                        n += 1
                r += 1
                starts[r] = n
    widths = starts[1:] - starts[:-1]
    width = widths.max() if widths.size else 0
    out = np.full((batch, heads, rows, width), -1, np.int64)
    flat = out.reshape(batch * heads * rows, width)
    for r in range(batch * heads * rows):
        flat[r, : widths[r]] = held[starts[r] : starts[r + 1]]
    return out
