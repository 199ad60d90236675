"""numba kernels of the density metric (:mod:`sah_core.metrics.micro_metric_logger`,
imported on first use). Module-level so that ``cache=True`` keeps the machine code."""

from __future__ import annotations

from typing import Any

from numba import njit


@njit(cache=True, nogil=True)
def allowed_pairs(mask: Any, forbidden_at_or_below: Any) -> int:
    """Entries of the additive ``mask [B, H, Q, K]`` above ``forbidden_at_or_below`` (NaN counts as
    allowed, as ``~(mask <= threshold)`` does)."""
    n = 0
    for b in range(mask.shape[0]):
        for h in range(mask.shape[1]):
            for i in range(mask.shape[2]):
                for x in mask[b, h, i]:
                    n += not x <= forbidden_at_or_below
    return n


@njit(cache=True, nogil=True)
def index_hits(
    indices: Any,
    weights: Any,
    has_weights: bool,
    mask: Any,
    has_mask: bool,
    forbidden_at_or_below: Any,
) -> tuple[int, int]:
    """``(attended, attended and allowed)`` over the entries of ``indices [B, H, Q, L]``: an
    entry is attended when its index is >= 0 and its weight (when given) > 0, allowed when
    the additive ``mask`` (read at ``[b, h, q, index]``, any strides) is above the
    threshold."""
    batch, heads, rows, width = indices.shape
    attended = 0
    allowed = 0
    for b in range(batch):
        for h in range(heads):
            for i in range(rows):
                for slot in range(width):
                    j = indices[b, h, i, slot]
                    if j < 0 or (has_weights and not weights[b, h, i, slot] > 0):
                        continue
                    attended += 1
                    if not has_mask or not mask[b, h, i, j] <= forbidden_at_or_below:
                        allowed += 1
    return attended, allowed
