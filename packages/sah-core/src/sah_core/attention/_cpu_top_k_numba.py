"""numba kernel of :mod:`sah_core.attention.cpu_top_k` (imported on first use: numba is slow
to import). Module-level functions so that ``cache=True`` can keep the machine code."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

SAMPLE = 64  # entries of a row read to place the threshold
TIGHT = 2  # sampled ranks below the top-k share for the first cut (fails for a few % of rows)
LOOSE = 8  # ... for the second cut (rarely fails; then the whole row is selected from)
BUCKETS = 256  # key ranges of the histogram that places the k-th largest candidate
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


#: Below this many entries the selection finishes with an insertion sort.
_SMALL = 12


@njit(inline="always", cache=True)
def kth_smallest(a: Any, n: int, kk: int, scratch: Any, spare: Any) -> Any:
    """The ``kk``-th smallest (0-based) of ``a[:n]`` (only read), by quickselect with
    out-of-place, branch-free partitions (median-of-three pivot) between the ``scratch``
    and ``spare`` buffers (each ``>= n``): every entry is written to both ends of the next
    buffer and counted where it belongs, so no branch depends on the data; an in-place
    Hoare partition mispredicts about every other comparison."""
    src, dst = a, scratch
    into_scratch = True  # a is never written: the passes alternate between the buffers
    base = 0
    while n > _SMALL:
        x0, x1, x2 = src[base], src[base + (n >> 1)], src[base + n - 1]
        if x0 > x1:
            x0, x1 = x1, x0
        if x1 > x2:
            x1 = x2
        if x0 > x1:
            x1 = x0
        pivot = x1
        below: Any = 0
        above: Any = 0
        top = base + n - 1
        for i in range(base, base + n):
            x = src[i]
            dst[base + below] = x  # kept only when counted (a later entry overwrites it)
            below += np.int64(x < pivot)
            dst[top - above] = x
            above += np.int64(x > pivot)
        if kk < below:
            n = below
        elif kk >= n - above:
            kk -= n - above
            base += n - above
            n = above
        else:
            return pivot  # the entries equal to the pivot hold rank kk
        src, dst = dst, (spare if into_scratch else scratch)
        into_scratch = not into_scratch
    for i in range(n):  # the few left: insertion sort into dst
        x = src[base + i]
        j = i
        while j > 0 and dst[base + j - 1] > x:
            dst[base + j] = dst[base + j - 1]
            j -= 1
        dst[base + j] = x
    return dst[base + kk]


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
def best_sampled(row: Any, step: int, taken: int, count: int, best: Any) -> None:
    """The ``count`` largest keys of the strided sample ``row[0], row[step], ...`` (``taken``
    entries) into ``best[:count]``, largest first: an insertion list, which a random entry
    rarely enters (so its comparison branch predicts well)."""
    for i in range(taken):
        x = ordered_key(row[i * step])
        if i >= count:
            if x <= best[count - 1]:
                continue
            j = count - 1
        else:
            j = i
        while j > 0 and best[j - 1] < x:
            best[j] = best[j - 1]
            j -= 1
        best[j] = x


@njit(inline="always", cache=True)
def kth_largest(
    row: Any,
    cand: Any,
    count: int,
    k: int,
    keys: Any,
    work: Any,
    spare: Any,
    extra: Any,
    histogram: Any,
) -> Any:
    """The ``k``-th largest key of the candidates ``row[cand[:count]]``, their keys left in
    ``keys[:count]``. One histogram of the keys over :data:`BUCKETS` equal key ranges
    between the smallest and the largest finds the range holding the ``k``-th; a quickselect
    runs on that range's few keys only."""
    low = _INT32_MAX
    high = _INT32_MIN
    for i in range(count):
        key = ordered_key(row[cand[i]])
        keys[i] = key
        low = min(low, key)
        high = max(high, key)
    shift = 0
    while (np.int64(high) - np.int64(low)) >> shift >= BUCKETS:
        shift += 1
    histogram[:] = 0
    for i in range(count):
        histogram[(np.int64(keys[i]) - np.int64(low)) >> shift] += 1
    bucket = BUCKETS - 1
    above = 0  # keys in the ranges above `bucket`
    while above + histogram[bucket] < k:
        above += histogram[bucket]
        bucket -= 1
    members: Any = 0
    for i in range(count):  # branch-free: the keys of that range into work
        work[members] = keys[i]
        members += np.int64((np.int64(keys[i]) - np.int64(low)) >> shift == bucket)
    return kth_smallest(work, members, members - (k - above), spare, extra)


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
    lead: int,
    lead_source: Any,
    lead_values: Any,
    lead_indices: Any,
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
    spare = np.empty(length, np.int32)
    extra = np.empty(length, np.int32)
    sample = np.empty(SAMPLE, np.int32)
    histogram = np.empty(BUCKETS, np.int64)
    for r in range(first, last):
        g, i_row = r // per_group, r % per_group
        row = scores[g, i_row]
        idx_out = out_indices[g, i_row]
        val_out = out_values[g, i_row]
        if lead:  # the leading columns, copied while the row is in cache
            source = lead_source[g, i_row]
            for c in range(lead):
                lead_indices[g, i_row, c] = c
                lead_values[g, i_row, c] = source[c] if c < source.shape[0] else -np.inf
        count = 0
        if loose < taken:
            best_sampled(row, step, taken, loose, sample)
            # the tight cut keeps ~share + TIGHT sampled ranks; when fewer than k entries
            # pass it, the loose one
            count = keep_at_least(row, sample[tight - 1], cand)
            if count < k:
                count = keep_at_least(row, sample[loose - 1], cand)
        if count < k:  # no cut, or the sample placed both too high: the whole row
            count = length
            for j in range(length):
                cand[j] = j
        kth = kth_largest(row, cand, count, k, keys, work, spare, extra, histogram)
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
    lead: int,
    lead_source: Any,
    lead_values: Any,
    lead_indices: Any,
) -> None:
    """The ``k`` largest entries of each row of ``scores [G, R, L]`` (``0 < k < L``) into
    ``out_values`` / ``out_indices`` ``[G, R, k]`` (any strides); ties at the k-th value by
    lowest index. ``offset`` is added to every index; a picked entry ``<= forbidden`` (a
    float32; NaN: none) is written as index -1 and value -inf. ``blocks`` row blocks run in
    parallel. ``lead > 0``: also ``lead_indices[g, r, c] = c`` and ``lead_values[g, r, c] =
    lead_source[g, r, c]`` (``-inf`` past its end) for ``c < lead`` (a prefill's sink
    entries, written with the row's picks)."""
    rows = scores.shape[0] * scores.shape[1]
    for block in prange(blocks):
        first, last = block * rows // blocks, (block + 1) * rows // blocks
        top_k_block(
            scores,
            k,
            first,
            last,
            out_values,
            out_indices,
            offset,
            forbidden,
            lead,
            lead_source,
            lead_values,
            lead_indices,
        )


@njit(cache=True, nogil=True)
def top_k_rows_serial(
    scores: Any,
    k: int,
    blocks: int,
    out_values: Any,
    out_indices: Any,
    offset: int,
    forbidden: Any,
    lead: int,
    lead_source: Any,
    lead_values: Any,
    lead_indices: Any,
) -> None:
    """:func:`top_k_rows` on the calling thread (no parallel launch: ~100 us less per call,
    for small problems; the same picks)."""
    rows = scores.shape[0] * scores.shape[1]
    top_k_block(
        scores,
        k,
        0,
        rows,
        out_values,
        out_indices,
        offset,
        forbidden,
        lead,
        lead_source,
        lead_values,
        lead_indices,
    )
