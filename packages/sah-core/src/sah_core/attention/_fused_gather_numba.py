"""numba kernel of :mod:`sah_core.attention.fused_gather` (imported on first use: numba is
slow to import). Module-level so that ``cache=True`` keeps the machine code.

``reassoc`` / ``contract`` let LLVM vectorise the dot products and fuse multiply-adds; the
flags that assume no NaN or infinity are left off: ``-inf`` marks absent keys and a NaN
score must reach its row's output, as in dense attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

_FAST = {"reassoc", "contract"}


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 in two parts: m * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.0)  # below: exp underflows fp32's normal range, taken as 0


@njit(fastmath=_FAST, cache=True, inline="always")
def exp_shifted(x: Any, start: int, n: int, top: Any) -> Any:
    """``x[i] = exp(x[i] - top)`` for ``start <= i < start + n`` (every ``x[i] <= top``;
    ``-inf`` -> 0) and
    their sum. A loop LLVM vectorises, unlike a libm call per entry: ``2^m`` times a
    degree-6 polynomial on the reduced argument (the Cephes ``expf`` scheme, within a few
    ulp of ``exp``)."""
    total = np.float32(0.0)
    for i in range(start, start + n):
        shifted = x[i] - top
        r = max(shifted, _EXP_MIN)
        m = np.floor(r * _LOG2E + np.float32(0.5))
        r = r - m * _LN2_HI - m * _LN2_LO
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        scale = np.int32((np.int32(m) + np.int32(127)) << np.int32(23)).view(np.float32)
        e = p * scale if shifted > _EXP_MIN else np.float32(0.0)
        x[i] = e
        total += e
    return total


@njit(fastmath=_FAST, cache=True, inline="always")
def attend_row(
    b: int,
    h: int,
    i: int,
    queries: Any,
    keys: Any,
    values: Any,
    kv_heads: int,
    key_pitch: int,
    value_pitch: int,
    indices: Any,
    weights: Any,
    bias: Any,
    scores: Any,
    slot_logits: Any,
    sink: Any,
    scaling: Any,
    flags: Any,
    out: Any,
    dense_prefix: int,
    prefix_probs: Any,
    logits: Any,
    acc: Any,
    picked: Any,
) -> None:
    """Query row ``(b, h, i)`` of :func:`fused_gather_attention` (``logits`` / ``picked`` /
    ``acc``: scratch of the index width (fp32, int64) and of the value dim)."""
    has_weights, has_bias, has_scores = flags[0], flags[1], flags[2]
    has_slot_logits, has_sink = flags[3], flags[4]
    dim = queries.shape[3]
    width = indices.shape[3]
    group = queries.shape[1] // kv_heads
    key_base = (b * kv_heads + h // group) * key_pitch
    value_base = (b * kv_heads + h // group) * value_pitch
    q = queries[b, h, i]
    top = np.float32(-np.inf)
    nan = False
    # the first dense_prefix entries (keys 0, 1, ...) keep their slots (their probabilities
    # go to prefix_probs, the caller's p @ V); the others are compacted as they are read:
    # logits in logits[dense_prefix:][:n], value rows in picked[:n] (a separate pass over
    # logits, reading what it had just written, cost ~7 ns per entry more)
    n: Any = 0
    last_w, last_log = np.float32(1.0), np.float32(0.0)
    for slot in range(width):
        j = indices[b, h, i, slot]
        if j < 0:
            if slot < dense_prefix:
                logits[slot] = -np.inf
            continue
        if has_slot_logits:
            logit = slot_logits[b, h, i, slot]
        elif has_scores:
            logit = scores[b, h, i, j]
        else:
            key = keys[key_base + j]
            dot = np.float32(0.0)
            for d in range(dim):
                dot += q[d] * key[d]
            logit = dot * scaling
        if has_weights:
            w = weights[b, h, i, slot]
            if not w > 0:  # weight 0 (or NaN): not attended
                if slot < dense_prefix:
                    logits[slot] = -np.inf
                continue
            if w != 1.0:  # log(1) = 0; a sampler's entries share one weight per row
                if w != last_w:
                    last_w, last_log = w, np.log(w)
                logit -= last_log
        if has_bias and not has_slot_logits:
            logit += bias[b, h, i, j]
        if logit != logit:
            nan = True
        elif logit > top:
            top = logit
        if slot < dense_prefix:
            logits[slot] = logit
        else:
            logits[dense_prefix + n] = logit
            picked[n] = value_base + j
            n += np.int64(logit != -np.inf)
    if has_sink and sink[h] > top:
        top = sink[h]
    if nan:
        out[b, h, i, :] = np.nan
        if dense_prefix:
            prefix_probs[b, h, i, :dense_prefix] = 0.0
        return
    if top == -np.inf:  # nothing attended (and no finite sink)
        out[b, h, i, :] = 0.0
        if dense_prefix:
            prefix_probs[b, h, i, :dense_prefix] = 0.0
        return
    total = exp_shifted(logits, 0, dense_prefix, top) + exp_shifted(logits, dense_prefix, n, top)
    if has_sink:
        total += np.exp(sink[h] - top)
    for slot in range(dense_prefix):
        prefix_probs[b, h, i, slot] = logits[slot] / total
    acc[:] = 0.0
    probs = logits[dense_prefix:]
    slot = 0
    while slot + 4 <= n:  # four rows per pass over acc: a quarter of its loads and stores
        v0, v1 = values[picked[slot]], values[picked[slot + 1]]
        v2, v3 = values[picked[slot + 2]], values[picked[slot + 3]]
        p0, p1, p2, p3 = probs[slot], probs[slot + 1], probs[slot + 2], probs[slot + 3]
        for d in range(acc.shape[0]):
            acc[d] += (p0 * v0[d] + p1 * v1[d]) + (p2 * v2[d] + p3 * v3[d])
        slot += 4
    while slot < n:
        v0, p0 = values[picked[slot]], probs[slot]
        for d in range(acc.shape[0]):
            acc[d] += p0 * v0[d]
        slot += 1
    for d in range(acc.shape[0]):
        out[b, h, i, d] = acc[d] / total


@njit(fastmath=_FAST, cache=True, inline="always")
def attend_block(
    first: int,
    last: int,
    queries: Any,
    keys: Any,
    values: Any,
    kv_heads: int,
    key_pitch: int,
    value_pitch: int,
    indices: Any,
    weights: Any,
    bias: Any,
    scores: Any,
    slot_logits: Any,
    sink: Any,
    scaling: Any,
    flags: Any,
    out: Any,
    dense_prefix: int,
    prefix_probs: Any,
) -> None:
    """:func:`attend_row` for the flat query rows ``first .. last - 1`` (row ``r`` is
    ``(b, h, i)`` in row-major order), with its own scratch."""
    heads, rows = queries.shape[1], queries.shape[2]
    logits = np.empty(indices.shape[3], np.float32)
    acc = np.empty(values.shape[1], np.float32)
    picked = np.empty(indices.shape[3], np.int64)
    for r in range(first, last):
        b, rest = r // (heads * rows), r % (heads * rows)
        h, i = rest // rows, rest % rows
        attend_row(
            b,
            h,
            i,
            queries,
            keys,
            values,
            kv_heads,
            key_pitch,
            value_pitch,
            indices,
            weights,
            bias,
            scores,
            slot_logits,
            sink,
            scaling,
            flags,
            out,
            dense_prefix,
            prefix_probs,
            logits,
            acc,
            picked,
        )


@njit(fastmath=_FAST, cache=True, nogil=True)
def fused_gather_attention(
    queries: Any,
    keys: Any,
    values: Any,
    kv_heads: int,
    key_pitch: int,
    value_pitch: int,
    indices: Any,
    weights: Any,
    bias: Any,
    scores: Any,
    slot_logits: Any,
    sink: Any,
    scaling: Any,
    flags: Any,
    out: Any,
    dense_prefix: int,
    prefix_probs: Any,
) -> None:
    """``out[b, h, i] = sum_l p_l * v_j`` with ``p`` the softmax of ``scaling * q . k_j -
    log(w_l) + bias[b, h, i, j]`` over the entries ``j = indices[b, h, i, l] >= 0`` with
    ``w_l > 0`` (plus ``sink[h]`` in the denominator). ``keys`` / ``values`` are the caches'
    rows as contiguous 2-D arrays: key ``j`` of batch row ``b``, KV head ``g`` is row
    ``(b * kv_heads + g) * key_pitch + j`` (so the dot products run on unit-stride rows).

    ``flags`` (bools) say which of ``weights``, ``bias``, ``scores`` (``scores[b, h, i, j]``
    is ``scaling * q . k_j``: no key is read), ``slot_logits`` (``slot_logits[b, h, i, l]``
    is entry ``l``'s ``scaling * q . k_j + bias``: neither keys nor bias are read) and
    ``sink`` are given; the others are placeholders. A row that attends nothing gets 0; a NaN
    logit makes its row NaN."""
    batch, heads, rows = queries.shape[:3]
    attend_block(
        0,
        batch * heads * rows,
        queries,
        keys,
        values,
        kv_heads,
        key_pitch,
        value_pitch,
        indices,
        weights,
        bias,
        scores,
        slot_logits,
        sink,
        scaling,
        flags,
        out,
        dense_prefix,
        prefix_probs,
    )


@njit(fastmath=_FAST, cache=True, nogil=True, parallel=True)
def fused_gather_attention_parallel(
    queries: Any,
    keys: Any,
    values: Any,
    kv_heads: int,
    key_pitch: int,
    value_pitch: int,
    indices: Any,
    weights: Any,
    bias: Any,
    scores: Any,
    slot_logits: Any,
    sink: Any,
    scaling: Any,
    flags: Any,
    out: Any,
    dense_prefix: int,
    prefix_probs: Any,
    blocks: int,
) -> None:
    """:func:`fused_gather_attention` with the query rows cut into ``blocks`` contiguous
    blocks run in parallel (each row computes exactly as in the serial kernel)."""
    batch, heads, rows = queries.shape[:3]
    total = batch * heads * rows
    for block in prange(blocks):
        attend_block(
            block * total // blocks,
            (block + 1) * total // blocks,
            queries,
            keys,
            values,
            kv_heads,
            key_pitch,
            value_pitch,
            indices,
            weights,
            bias,
            scores,
            slot_logits,
            sink,
            scaling,
            flags,
            out,
            dense_prefix,
            prefix_probs,
        )
