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
    logits: Any,
    acc: Any,
) -> None:
    """Query row ``(b, h, i)`` of :func:`fused_gather_attention` (``logits`` / ``acc``:
    scratch of the index width and the value dim)."""
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
    for slot in range(width):
        j = indices[b, h, i, slot]
        if j < 0:
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
                logits[slot] = -np.inf
                continue
            logit -= np.log(w)
        if has_bias and not has_slot_logits:
            logit += bias[b, h, i, j]
        if logit != logit:
            nan = True
        elif logit > top:
            top = logit
        logits[slot] = logit
    if has_sink and sink[h] > top:
        top = sink[h]
    if nan:
        out[b, h, i, :] = np.nan
        return
    if top == -np.inf:  # nothing attended (and no finite sink)
        out[b, h, i, :] = 0.0
        return
    total = np.float32(0.0)
    acc[:] = 0.0
    for slot in range(width):
        if logits[slot] == -np.inf:
            continue
        p = np.exp(logits[slot] - top)
        total += p
        value = values[value_base + indices[b, h, i, slot]]
        for d in range(acc.shape[0]):
            acc[d] += p * value[d]
    if has_sink:
        total += np.exp(sink[h] - top)
    for d in range(acc.shape[0]):
        out[b, h, i, d] = acc[d] / total


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
    logits = np.empty(indices.shape[3], np.float32)
    acc = np.empty(values.shape[1], np.float32)
    for b in range(batch):
        for h in range(heads):
            for i in range(rows):
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
                    logits,
                    acc,
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
    blocks: int,
) -> None:
    """:func:`fused_gather_attention` with the query rows cut into ``blocks`` contiguous
    blocks run in parallel (each row computes exactly as in the serial kernel)."""
    batch, heads, rows = queries.shape[:3]
    total = batch * heads * rows
    for block in prange(blocks):
        logits = np.empty(indices.shape[3], np.float32)
        acc = np.empty(values.shape[1], np.float32)
        for r in range(block * total // blocks, (block + 1) * total // blocks):
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
                logits,
                acc,
            )
