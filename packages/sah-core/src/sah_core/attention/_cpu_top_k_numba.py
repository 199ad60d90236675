"""numba kernel of :mod:`sah_core.attention.cpu_top_k` (imported on first use: numba is slow
to import). Module-level functions so that ``cache=True`` can keep the machine code."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

SAMPLE = 64  # entries of a row read to place the threshold
TIGHT = 2  # sampled ranks below the top-k share for the first cut (fails for a few % of rows)
LOOSE = 8  # ... for the second cut (rarely fails; then the whole row is selected from)
_INT32_MAX = np.int32(2147483647)
_INT32_MIN = np.int32(-2147483648)
_MAGNITUDE = np.int32(0x7FFFFFFF)


@njit(inline="always", cache=True)
def ordered_key(x: float) -> Any:
    """int32 with the float order; every NaN above +inf (``torch.topk``'s order)."""
    if x != x:
        return _INT32_MAX
    bits = np.float32(x).view(np.int32)
    return bits ^ ((bits >> 31) & _MAGNITUDE)


@njit(inline="always", cache=True)
def kth_smallest(a: Any, n: int, kk: int) -> Any:
    """In-place quickselect (median of three, Hoare partition): the ``kk``-th smallest
    (0-based) of ``a[:n]``."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x0, x1, x2 = a[lo], a[mid], a[hi]
        if x0 > x1:
            x0, x1 = x1, x0
        if x1 > x2:
            x1 = x2
        if x0 > x1:
            x1 = x0
        pivot = x1
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if kk <= j:
            hi = j
        elif kk >= i:
            lo = i
        else:
            return a[kk]
    return a[kk]


@njit(inline="always", cache=True)
def keep_at_least(row: Any, cut: Any, cand: Any) -> Any:
    """Indices of the entries of ``row`` not below the float of key ``cut`` into ``cand``
    (NaN kept: it ranks highest); returns their count. Branch-free: a write is undone by
    not counting it."""
    t = np.int32(cut ^ ((cut >> 31) & _MAGNITUDE)).view(np.float32)
    count: Any = 0
    for j in range(row.shape[0]):
        cand[count] = j
        count += np.int64(not row[j] < t)
    return count


@njit(inline="always", cache=True)
def top_k_block(
    scores: Any,
    k: int,
    first: int,
    last: int,
    out_values: Any,
    out_indices: Any,
    offset: int,
    forbidden: Any,
) -> None:
    """:func:`top_k_rows` for the flat rows ``first .. last - 1``."""
    per_group, length = scores.shape[1], scores.shape[2]
    step = max(1, length // SAMPLE)
    taken = min(SAMPLE, length // step)
    share = (k * taken + length - 1) // length  # sampled entries expected above the k-th
    tight, loose = share + TIGHT, share + LOOSE
    cand = np.empty(length, np.int32)
    keys = np.empty(length, np.int32)
    work = np.empty(length, np.int32)
    sample = np.empty(SAMPLE, np.int32)
    for r in range(first, last):
        g, i_row = r // per_group, r % per_group
        row = scores[g, i_row]
        idx_out = out_indices[g, i_row]
        val_out = out_values[g, i_row]
        count = 0
        if loose < taken:
            for i in range(taken):
                sample[i] = ordered_key(row[i * step])
            # the tight cut keeps ~share + TIGHT sampled ranks; when fewer than k entries
            # pass it, the loose one (the sample is reordered around the tight rank)
            count = keep_at_least(row, kth_smallest(sample, taken, taken - tight), cand)
            if count < k:
                cut = kth_smallest(sample, taken, taken - loose)
                count = keep_at_least(row, cut, cand)
        if count < k:  # no cut, or the sample placed both too high: the whole row
            count = length
            for j in range(length):
                cand[j] = j
        for i in range(count):
            keys[i] = ordered_key(row[cand[i]])
            work[i] = keys[i]
        kth = kth_smallest(work, count, count - k)
        out: Any = 0
        for i in range(count):  # branch-free: at most k - 1 keys exceed the k-th
            idx_out[out] = cand[i]
            out += np.int64(keys[i] > kth)
        for i in range(count):  # ties at the k-th value: lowest index first
            if out >= k:
                break
            if keys[i] == kth:
                idx_out[out] = cand[i]
                out += 1
        for i in range(k):
            value = row[idx_out[i]]
            if value <= forbidden:
                idx_out[i] = -1
                val_out[i] = -np.inf
            else:
                idx_out[i] += offset
                val_out[i] = value


@njit(parallel=True, cache=True, nogil=True)
def top_k_rows(
    scores: Any,
    k: int,
    blocks: int,
    out_values: Any,
    out_indices: Any,
    offset: int,
    forbidden: Any,
) -> None:
    """The ``k`` largest entries of each row of ``scores [G, R, L]`` (``0 < k < L``) into
    ``out_values`` / ``out_indices`` ``[G, R, k]`` (any strides); ties at the k-th value by
    lowest index. ``offset`` is added to every index; a picked entry ``<= forbidden`` (a
    float32; NaN: none) is written as index -1 and value -inf. ``blocks`` row blocks run in
    parallel."""
    rows = scores.shape[0] * scores.shape[1]
    for block in prange(blocks):
        first, last = block * rows // blocks, (block + 1) * rows // blocks
        top_k_block(scores, k, first, last, out_values, out_indices, offset, forbidden)


@njit(cache=True, nogil=True)
def top_k_rows_serial(
    scores: Any,
    k: int,
    blocks: int,
    out_values: Any,
    out_indices: Any,
    offset: int,
    forbidden: Any,
) -> None:
    """:func:`top_k_rows` on the calling thread (no parallel launch: ~100 us less per call,
    for small problems; the same picks)."""
    rows = scores.shape[0] * scores.shape[1]
    top_k_block(scores, k, 0, rows, out_values, out_indices, offset, forbidden)
