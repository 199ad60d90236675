"""Attention over an index-form mask: the single entry point ResearchAttention calls.

``index_attention(queries, keys, values, indices, weights, scaling=..., ...)`` computes, for
every row ``(b, h, q)``, the softmax over the selected keys only, with logit
``scaling * q . k_j + attention_mask[j] - log(w_j)`` (importance weight ``1/w_j``), plus an
optional sink logit per head in the denominator, and returns ``[B, Hq, Q, D]``.

Backends
--------
Which implementation runs is chosen by the one backend layer,
:mod:`sah_core.attention.backends` (user-supplied, Triton, torch reference).
``register_index_attention_backend(fn)`` is the older hook (a callable with this function's
signature returning the output or None to decline); it now installs ``fn`` in that layer.
``backend="reference"`` forces the torch path (tests compare against it).

Torch reference
---------------
Two exact strategies, chosen per call by expected cost:
* gather -- copy only the selected key/value rows (``index_select`` on the flattened
  ``[B*Hkv*K, D]`` cache, no repeated KV for GQA); best for decode (few query rows);
* dense-chunk -- per query chunk, one grouped matmul over the key columns the chunk can use,
  the mask scattered into a logit bias; best for prefill (many rows, wide selections).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import torch

from sah_core.attention.common import grouped_scores, plan_chunk_rows
from sah_core.attention.fused_gather import (
    FUSED_KEYS_MAX_DENSITY,
    fused_gather_applies,
    fused_gather_attention,
)
from sah_core.attention.softmax import apply_dropout, softmax_with_sink

#: Index lists at least this long are sorted before the gather path copies their rows.
SORT_BEFORE_GATHER_MIN = 512

IndexAttentionBackend = Callable[..., torch.Tensor | None]


def _backend_name(backend: IndexAttentionBackend) -> str:
    return f"index:{getattr(backend, '__qualname__', type(backend).__name__)}@{id(backend):x}"


def register_index_attention_backend(backend: IndexAttentionBackend) -> IndexAttentionBackend:
    """Install an index-form backend ``fn(queries, keys, values, indices, weights, *,
    scaling, attention_mask, s_aux, dropout, query_chunk_size) -> Tensor | None`` in the
    backend layer (tried before the built-ins; usable as a decorator). New code:
    :func:`sah_core.attention.backends.register_attention_backend`."""
    from sah_core.attention.backends import register_attention_backend

    def adapted(call: Any, mask: Any) -> torch.Tensor | None:
        if mask.representation != "index":
            return None
        indices, weights = mask.index_view()
        out: torch.Tensor | None = backend(
            call.queries,
            call.keys,
            call.values,
            indices,
            weights,
            scaling=call.scaling,
            attention_mask=call.attention_mask,
            s_aux=call.s_aux,
            dropout=call.dropout,
            query_chunk_size=call.requested_chunk_rows,
        )
        return out

    register_attention_backend(_backend_name(backend), adapted)
    return backend


def unregister_index_attention_backend(backend: IndexAttentionBackend) -> None:
    """Remove a backend installed with :func:`register_index_attention_backend`."""
    from sah_core.attention.backends import unregister_attention_backend

    unregister_attention_backend(_backend_name(backend))


def index_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    dropout: float = 0.0,
    query_chunk_size: int | None = None,
    backend: Literal["auto", "reference"] = "auto",
) -> torch.Tensor:
    """Attention of ``queries [B, Hq, Q, D]`` over the keys selected by ``indices``.

    ``keys``/``values`` ``[B, Hkv, K, D]``; ``indices`` int64 ``[B, Hq, Q, L]`` (-1 padding),
    ``weights`` ``[B, Hq, Q, L]`` keep-probabilities (0 = not attended) or None for weight 1
    at every non-padding entry (a binary mask: skips the importance-weight work);
    ``attention_mask`` additive float broadcastable to ``[B, Hq, Q, K]`` (already normalised,
    see :func:`sah_core.attention.common.normalize_attention_mask`) or None; ``s_aux`` ``[Hq]``.
    Returns ``[B, Hq, Q, D]`` in the query dtype.
    """
    if backend not in ("auto", "reference"):
        raise ValueError(f"backend={backend!r} is not allowed: use 'auto' or 'reference'")
    if backend == "reference":
        return index_attention_reference(
            queries,
            keys,
            values,
            indices,
            weights,
            scaling=scaling,
            attention_mask=attention_mask,
            s_aux=s_aux,
            dropout=dropout,
            query_chunk_size=query_chunk_size,
        )
    from sah_core.attention.backends import run_attention
    from sah_core.call_plan import CallPlan
    from sah_core.mask import Mask

    shape = (*indices.shape[:3], keys.shape[2])
    mask = Mask.from_index(indices, weights, shape, assume_unique=True, validate=False)
    call = CallPlan.build(
        queries,
        keys,
        values,
        attention_mask,
        scaling,
        dropout=dropout,
        s_aux=s_aux,
        query_chunk_size=query_chunk_size,
    )
    return run_attention(call, mask)[0]


def index_attention_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    dropout: float = 0.0,
    query_chunk_size: int | None = None,
) -> torch.Tensor:
    """The torch path of :func:`index_attention` (exact; picks gather or dense-chunk)."""
    return index_attention_reference_named(
        queries,
        keys,
        values,
        indices,
        weights,
        scaling=scaling,
        attention_mask=attention_mask,
        s_aux=s_aux,
        dropout=dropout,
        query_chunk_size=query_chunk_size,
    )[0]


def index_attention_reference_named(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    dropout: float = 0.0,
    query_chunk_size: int | None = None,
    shared_scores: Callable[[int, int], torch.Tensor | None] | None = None,
    logits: torch.Tensor | None = None,
    logits_prefix: int = 0,
) -> tuple[torch.Tensor, str]:
    """:func:`index_attention_reference` plus the strategy that ran (for the metrics).

    ``shared_scores(start, end)`` (e.g. :meth:`CallPlan.cached_scores`) may return the
    logits ``scaling * q . k`` ``[B, Hq, end-start, K']`` a masker already computed for those
    query rows; the gather path then reads the selected keys' logits from it instead of
    gathering their keys (read-only; None = compute them).

    ``logits`` (fp32 ``[B, Hq, Q, L]``, read-only) are the logits of every index entry with
    the attention mask already added, ``scaling * q . k_j + attention_mask[j]`` (``-inf`` at
    the -1 entries), as a top-k masker over the exact logits keeps them
    (:func:`~sah_core.attention.common.remember_index_logits`): no ``q . K`` is computed and
    no key is read; the importance weights are still applied here. ``logits_prefix``: the
    first entries of every row are the keys ``0 .. logits_prefix - 1`` (a sink), whose
    share the fused kernel computes as one dense ``p @ V`` (when those values are finite)."""
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    width = indices.shape[-1]
    group = hq // hkv
    use_gather = 2 * group * q * width <= k or 16 * width <= k
    name = "reference/gather" if use_gather else "reference/dense-chunk"

    def new_out() -> torch.Tensor:
        shape = (b, hq, q, values.shape[-1])
        return torch.empty(shape, dtype=queries.dtype, device=queries.device)

    if q == 0:
        return new_out(), name
    with_logits = logits is not None
    cached = None if with_logits or shared_scores is None else shared_scores(0, q)
    # Without scores a masker already computed, a dense chunk computes q . k for every key
    # and p @ V over all of them; up to FUSED_KEYS_MAX_DENSITY the fused kernel, reading only
    # the selected keys and values, is faster (benchmarks/index_attention_paths.py). With
    # such scores the dense chunk costs one matmul less: a tie, so it stays.
    sparse_enough = cached is None and width <= FUSED_KEYS_MAX_DENSITY * k
    fused = use_gather or with_logits or sparse_enough
    if fused and fused_gather_applies(queries, keys, values, indices, dropout, with_logits):
        if cached is not None and not _scores_cover(cached, indices, k):
            cached = None
        out = fused_gather_attention(
            queries,
            keys,
            values,
            indices,
            weights,
            scaling=scaling,
            attention_mask=attention_mask,
            s_aux=s_aux,
            scores=cached,
            slot_logits=logits,
            dense_prefix=_usable_prefix(values, logits_prefix) if with_logits else 0,
        )
        fused_name = "reference/gather-fused"
        return out, fused_name if logits is None else f"{fused_name}+logits"
    if logits is not None:
        out = new_out()
        return _attention_from_logits(
            values, indices, weights, logits, s_aux, dropout, query_chunk_size, use_gather, out
        ), f"{name}+logits"
    if use_gather:
        # the gathered [.., L, D] rows are the working tensor (a 4x larger budget: no K axis)
        chunk = plan_chunk_rows(query_chunk_size, max(1, b * hq * max(width, 1) * d) // 4)
    else:
        chunk = plan_chunk_rows(query_chunk_size, b * hq * k)
    step = _gather_chunk if use_gather else _dense_chunk

    def run(start: int, end: int) -> torch.Tensor:
        whole = start == 0 and end == q
        cached = shared_scores(start, end) if shared_scores is not None else None
        return step(
            queries if whole else queries[:, :, start:end],
            keys,
            values,
            indices if whole else indices[:, :, start:end],
            weights if weights is None or whole else weights[:, :, start:end],
            scaling,
            attention_mask if attention_mask is None or whole else attention_mask[:, :, start:end],
            s_aux,
            dropout,
            cached,
        )

    if chunk >= q:
        return run(0, q), name  # one chunk: no output buffer to fill
    out = new_out()
    for start in range(0, q, chunk):
        end = min(q, start + chunk)
        out[:, :, start:end] = run(start, end)
    return out, name


def _usable_prefix(values: torch.Tensor, prefix: int) -> int:
    """``prefix`` when the values of keys ``[0, prefix)`` are finite, else 0: the dense
    ``p @ V`` multiplies them by the probability 0 of a forbidden entry, which the gather
    skips (``0 * inf`` would be NaN)."""
    if prefix <= 0 or prefix > values.shape[2]:
        return 0
    return prefix if bool(torch.isfinite(values[:, :, :prefix]).all()) else 0


def _add_importance_bias(
    logits: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """In place: ``-log(w)`` for attended entries, ``-inf`` for padding / weight 0."""
    if weights is None:  # binary mask: only padding needs masking
        return logits.masked_fill_(indices < 0, float("-inf"))
    # padding carries weight 0 by the Mask contract, so w > 0 alone identifies real entries;
    # logit - log(w) is exactly logit + (-log(w)), and weight 0 (log = -inf) is blanked after
    w = weights if weights.dtype == torch.float32 else weights.float()
    return logits.sub_(torch.log(w)).masked_fill_(~(w > 0), float("-inf"))  # NaN w: -inf


_HEAD_ROWS: dict[tuple[int, int, int, str], torch.Tensor] = {}


def kv_head_rows(b: int, hq: int, hkv: int, device: torch.device) -> torch.Tensor:
    """``[B, Hq, 1, 1]`` int64: the flattened ``B*Hkv`` head each (batch row, query head)
    reads (query head h reads KV head ``h // (Hq // Hkv)``); built once per shape."""
    key = (b, hq, hkv, str(device))
    heads = _HEAD_ROWS.get(key)
    if heads is None:
        head_of = torch.arange(hq, device=device) // (hq // hkv)
        heads = (torch.arange(b, device=device).unsqueeze(1) * hkv + head_of).view(b, hq, 1, 1)
        if len(_HEAD_ROWS) > 256:
            _HEAD_ROWS.clear()
        _HEAD_ROWS[key] = heads
    return heads


def kv_flat_rows(
    indices: torch.Tensor, hkv: int, key_len: int, *, nonnegative: bool = False
) -> torch.Tensor:
    """Flat row numbers into a ``[B*Hkv*K, D]`` view of the cache for ``indices [B, Hq, Qc,
    L]`` (-1 reads row 0 of its head), flattened to 1-D. ``nonnegative``: the caller already
    clamped the padding to 0."""
    b, hq = indices.shape[0], indices.shape[1]
    heads = kv_head_rows(b, hq, hkv, indices.device)
    safe = indices if nonnegative else indices.clamp(min=0)
    return torch.add(safe, heads, alpha=key_len).reshape(-1)


def kv_row_pitch(tensor: torch.Tensor) -> int | None:
    """Rows between two KV heads' first keys in ``tensor [B, Hkv, K, D]``'s storage, when its
    keys are rows of ``D`` contiguous values laid out head after head: ``K`` when contiguous,
    the capacity for a view into a larger preallocated cache (``sah_adapters.reserved_kv``).
    None for any other layout (then the gathers copy it first)."""
    b, hkv, k, d = tensor.shape
    if not tensor.numel():
        return None
    s0, s1, s2, s3 = tensor.stride()
    if (d == 1 or s3 == 1) and (k == 1 or s2 == d) and s1 % d == 0:
        pitch = s1 // d
        if pitch >= k and (b == 1 or s0 == hkv * s1):
            return pitch
    return None


def kv_cache_rows(cache: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``cache [B, Hkv, K, D]`` as contiguous ``[rows, D]`` rows and the row pitch between
    heads: key ``j`` of ``(b, g)`` is row ``(b * Hkv + g) * pitch + j``. A view (no copy)
    for the layouts :func:`kv_row_pitch` accepts, also of a cache whose rows sit in a larger
    preallocated buffer; other layouts are copied (pitch ``K``)."""
    b, hkv, k, d = cache.shape
    pitch = kv_row_pitch(cache)
    if pitch is None:
        return cache.reshape(b * hkv * k, d), k  # a copy
    return cache.as_strided(((b * hkv - 1) * pitch + k, d), (d, 1)), pitch


#: CPU gathers of at least this many bytes write into a reused per-thread buffer (see
#: :func:`gather_kv_rows`); fresh outputs of this size cost page faults on many calls (at
#: K=32K a 31 MiB row gather took 8-11 ms fresh against 2.5-3.5 ms into a kept buffer; at
#: SmolLM2's 3.5K-token decode a ~1 MiB one 0.5-1 ms against ~0.1 ms).
WORKSPACE_MIN_BYTES = 1 << 16
#: Larger gathers than this are never kept (a fresh tensor each call).
WORKSPACE_MAX_BYTES = 1 << 29


class _Workspace(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}


_WORKSPACE = _Workspace()


def release_gather_workspace() -> None:
    """Free the buffers the CPU row gathers of this thread keep between calls."""
    _WORKSPACE.buffers.clear()


def _workspace_buffer(
    slot: str, numel: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """A flat ``numel`` view of this thread's kept buffer ``slot`` (grown when too small),
    or None when the gather should allocate (not CPU, too small or too large)."""
    size = numel * dtype.itemsize
    if device.type != "cpu" or not WORKSPACE_MIN_BYTES <= size <= WORKSPACE_MAX_BYTES:
        return None
    key = (slot, dtype)
    buffer = _WORKSPACE.buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = torch.empty(numel, dtype=dtype, device=device)
        _WORKSPACE.buffers[key] = buffer
    return buffer[:numel]


def gather_kv_rows(
    tensor: torch.Tensor,
    indices: torch.Tensor,
    flat_rows: torch.Tensor | None = None,
    rows_pitch: int | None = None,
    workspace: str | None = None,
) -> torch.Tensor:
    """Rows of ``tensor [B, Hkv, K, D]`` picked by ``indices [B, Hq, Qc, L]`` (query head h
    reads KV head ``h // (Hq // Hkv)``; -1 reads row 0) -> ``[B, Hq, Qc, L, D]``.
    ``flat_rows`` (:func:`kv_flat_rows` of the same indices at row pitch ``rows_pitch``,
    default ``K``) skips recomputing the rows when that is this tensor's pitch.

    ``workspace`` (a slot name): on the CPU, a gather of at least
    :data:`WORKSPACE_MIN_BYTES` writes into this thread's kept buffer of that slot instead of
    a fresh tensor, so the result is only valid until the next gather into the same slot
    (use it at once; the attention paths do). Ignored when ``tensor`` requires grad."""
    _, hkv, k, d = tensor.shape
    flat, pitch = kv_cache_rows(tensor)
    if flat_rows is None or (k if rows_pitch is None else rows_pitch) != pitch:
        rows = kv_flat_rows(indices, hkv, pitch)
    else:
        rows = flat_rows
    if workspace is not None and not tensor.requires_grad:
        buffer = _workspace_buffer(workspace, rows.numel() * d, tensor.dtype, tensor.device)
        if buffer is not None:
            torch.index_select(flat, 0, rows, out=buffer.view(rows.numel(), d))
            return buffer.view(*indices.shape, d)
    # embedding is torch's fastest row gather on CPU (faster than index_select/indexing)
    return torch.nn.functional.embedding(rows, flat).view(*indices.shape, d)


def _scores_cover(scores: torch.Tensor, indices: torch.Tensor, key_len: int) -> bool:
    """True when ``scores [.., K']`` hold a column for every index (``K' = K`` or every
    index below ``K'``)."""
    if scores.shape[-1] == key_len:
        return True
    return indices.numel() > 0 and int(indices.max()) < scores.shape[-1]


def _gather_chunk(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    scaling: float,
    attention_mask: torch.Tensor | None,
    s_aux: torch.Tensor | None,
    dropout: float,
    cached: torch.Tensor | None = None,
) -> torch.Tensor:
    if indices.shape[-1] >= SORT_BEFORE_GATHER_MIN:
        # Row order is irrelevant to attention; ascending rows make the gathers read memory
        # in order (about 2x faster on the CPU for thousands of scattered rows).
        indices, order = indices.sort(dim=-1)
        if weights is not None:
            weights = weights.gather(-1, order)
    safe = indices.clamp(min=0)  # padding (-1) reads key 0; masked out below
    pitch = kv_row_pitch(keys) or keys.shape[2]
    rows = kv_flat_rows(safe, keys.shape[1], pitch, nonnegative=True)
    if cached is not None and _scores_cover(cached, indices, keys.shape[2]):
        # the logits a masker computed for these rows (call.chunk_scores): no key gather
        logits = cached.gather(-1, safe)
        if logits.dtype != torch.float32:
            logits = logits.float()
    else:
        selected_keys = gather_kv_rows(keys, indices, rows, pitch, "keys")  # [B, Hq, Qc, L, D]
        logits = torch.matmul(queries.unsqueeze(-2), selected_keys.transpose(-1, -2)).squeeze(-2)
        logits = (logits if logits.dtype == torch.float32 else logits.float()).mul_(scaling)
    logits = _add_importance_bias(logits, indices, weights)
    if attention_mask is not None:
        full_shape = (*indices.shape[:3], attention_mask.shape[-1])
        bias = attention_mask.expand(full_shape).gather(-1, safe)
        logits.add_(bias.float())
    probs = apply_dropout(softmax_with_sink(logits, s_aux), dropout)
    if probs.dtype != values.dtype:
        probs = probs.to(values.dtype)
    selected_values = gather_kv_rows(values, indices, rows, pitch, "values")
    out = torch.matmul(probs.unsqueeze(-2), selected_values).squeeze(-2)
    return out if out.dtype == queries.dtype else out.to(queries.dtype)


def grouped_probs_values(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``probs [B, Hq, Qc, K'] @ values[:, :, :K'] -> [B, Hq, Qc, D]`` without repeating KV."""
    b, hq, qc, kl = probs.shape
    hkv = values.shape[1]
    grouped = probs.to(values.dtype).reshape(b, hkv, (hq // hkv) * qc, kl)
    out = torch.matmul(grouped, values[:, :, :kl])
    return out.view(b, hq, qc, values.shape[-1])


def _dense_chunk(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    scaling: float,
    attention_mask: torch.Tensor | None,
    s_aux: torch.Tensor | None,
    dropout: float,
    cached: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense matmuls, sparse softmax: logits of the selected keys are read from one grouped
    ``q @ k^T`` over the columns the chunk can use, the softmax runs on ``[.., L]`` only, and
    the probabilities are scattered into a zero matrix for one grouped ``p @ v``."""
    # Only the columns up to the largest selected index matter (the causal part in prefill).
    limit = int(indices.max()) + 1 if indices.numel() > 0 else 0
    if limit <= 0:
        # no key selected in any row: softmax over nothing (or only the sink) gives 0
        return torch.zeros(
            (*queries.shape[:3], values.shape[-1]), dtype=queries.dtype, device=queries.device
        )
    safe = indices.clamp(min=0)
    if cached is not None and cached.shape[-1] >= limit:
        # the q . k a masker computed for these rows (call.chunk_scores, read-only): the
        # probabilities get a buffer of their own
        scores = cached[..., :limit]
        dense_probs = torch.empty(scores.shape, dtype=values.dtype, device=scores.device)
    else:
        scores = grouped_scores(queries, keys[:, :, :limit], scaling)
        # reuse the score buffer for the scattered probabilities (no new [.., Qc, K']
        # allocation)
        dense_probs = scores if scores.dtype == values.dtype else scores.to(values.dtype)
    logits = _add_importance_bias(scores.gather(-1, safe).float(), indices, weights)
    if attention_mask is not None:
        full_shape = (*indices.shape[:3], attention_mask.shape[-1])
        logits.add_(attention_mask.expand(full_shape).gather(-1, safe).float())
    probs = apply_dropout(softmax_with_sink(logits, s_aux), dropout)
    # padding has probability 0, so adding it to column 0 changes nothing
    dense_probs.zero_().scatter_add_(-1, safe, probs.to(values.dtype))
    return grouped_probs_values(dense_probs, values).to(queries.dtype)


def _attention_from_logits(
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    logits: torch.Tensor,
    s_aux: torch.Tensor | None,
    dropout: float,
    query_chunk_size: int | None,
    use_gather: bool,
    out: torch.Tensor,
) -> torch.Tensor:
    """Index attention from precomputed logits (see ``logits`` of
    :func:`index_attention_reference_named`): per query chunk a softmax over the ``L``
    logits, then ``p @ v`` -- from the gathered value rows (few query rows), or as one
    grouped matmul over the probabilities scattered into a zero ``[.., Qc, K']`` buffer
    (reused across chunks)."""
    b, hq, q, _ = indices.shape
    k = values.shape[2]
    if use_gather:
        rows_per = plan_chunk_rows(
            query_chunk_size, max(1, b * hq * max(indices.shape[-1], 1) * values.shape[-1]) // 4
        )
    else:
        rows_per = plan_chunk_rows(query_chunk_size, b * hq * k)
    rows_per = min(rows_per, q)
    buffer = None if use_gather else values.new_empty(b * hq * rows_per * k)
    # per-chunk softmax and clamped indices go to buffers kept across the chunks: fresh
    # multi-MiB tensors each chunk cost page faults comparable to the ops themselves
    width = indices.shape[-1]
    reuse = not use_gather and s_aux is None and q > rows_per
    probs_buffer = logits.new_empty(b * hq * rows_per * width) if reuse else None
    safe_buffer = indices.new_empty(b * hq * rows_per * width) if reuse else None
    for start in range(0, q, rows_per):
        end = min(q, start + rows_per)
        idx = indices[:, :, start:end]
        chunk_logits = logits[:, :, start:end]
        if weights is not None:  # (padding already holds -inf: remember_index_logits)
            chunk_logits = _add_importance_bias(chunk_logits.clone(), idx, weights[:, :, start:end])
        if probs_buffer is not None and safe_buffer is not None:
            size = b * hq * (end - start) * width
            probs_out = probs_buffer[:size].view(idx.shape)
            probs = apply_dropout(softmax_with_sink(chunk_logits, None, probs_out), dropout)
            safe = torch.clamp(idx, min=0, out=safe_buffer[:size].view(idx.shape))
        else:
            probs = apply_dropout(softmax_with_sink(chunk_logits, s_aux), dropout)
            safe = idx.clamp(min=0)
        if use_gather:
            selected_values = gather_kv_rows(values, idx)
            part = torch.matmul(probs.to(values.dtype).unsqueeze(-2), selected_values).squeeze(-2)
        else:
            limit = int(idx.max()) + 1 if idx.numel() > 0 else 0
            if limit <= 0:
                out[:, :, start:end] = 0
                continue
            assert buffer is not None
            dense_probs = buffer[: b * hq * (end - start) * limit].view(b, hq, end - start, limit)
            dense_probs.zero_().scatter_add_(-1, safe, probs.to(values.dtype))
            part = grouped_probs_values(dense_probs, values)
        if start == 0 and end == q:
            return part.to(out.dtype)
        out[:, :, start:end] = part
    return out
