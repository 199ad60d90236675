"""numba kernel of :mod:`sah_core.attention.mask_bounds` (imported on first use: numba is slow
to import). Module-level so that ``cache=True`` keeps the machine code."""

from __future__ import annotations

from typing import Any

from numba import njit


@njit(cache=True, nogil=True)
def mask_row_bounds(mask: Any, forbidden_below: Any, first: Any, last: Any) -> None:
    """For each query row ``q`` of the additive ``mask [B, H, Q, K]``: ``first[q]`` = the
    first column where any (batch, head) row is nonzero (``K``: none), ``last[q]`` = the
    last column any of them may attend, an entry ``> forbidden_below`` (-1: none). Each row
    is read from the left only up to the first column found so far and from the right only
    down to the last one: one pass over the mask in all."""
    batch, heads, rows, keys = mask.shape
    first[:] = keys
    last[:] = -1
    for b in range(batch):
        for h in range(heads):
            for q in range(rows):
                row = mask[b, h, q]
                j = 0
                while j < first[q] and row[j] == 0:
                    j += 1
                first[q] = min(first[q], j)
                j = keys - 1
                while j > last[q] and not row[j] > forbidden_below:
                    j -= 1
                last[q] = max(last[q], j)
