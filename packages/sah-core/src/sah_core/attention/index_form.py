"""Attention over an index-form mask: the single entry point ResearchAttention calls.

``index_attention(queries, keys, values, indices, weights, scaling=..., ...)`` computes, for
every row ``(b, h, q)``, the softmax over the selected keys only, with logit
``scaling * q . k_j + attention_mask[j] - log(w_j)`` (importance weight ``1/w_j``), plus an
optional sink logit per head in the denominator, and returns ``[B, Hq, Q, D]``.

Kernel hook
-----------
This module is where a fused kernel plugs in. ``register_index_attention_backend(fn)``
installs a callable with this function's signature (``weights`` may be None: a binary
mask, weight 1 at every non-padding index) that returns the output tensor, or
``None`` when it cannot handle the call (wrong device, dropout, ...); backends are tried
most-recent first, then the torch reference below runs. With ``backend="auto"`` and CUDA
tensors the Triton decode kernel of :mod:`sah_core.kernels.dispatch` is also tried when it is
importable (the attention mask is folded into the indices when it only forbids keys).
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

import logging
from collections.abc import Callable
from typing import Any, Literal

import torch

from sah_core.attention.common import DEFAULT_CHUNK_ELEMENTS, grouped_scores
from sah_core.attention.softmax import apply_dropout, softmax_with_sink

logger = logging.getLogger(__name__)

#: Calls with more query rows than this never go to the Triton *decode* kernel.
TRITON_DECODE_MAX_QUERIES = 64

#: Index lists at least this long are sorted before the gather path copies their rows.
SORT_BEFORE_GATHER_MIN = 512

IndexAttentionBackend = Callable[..., torch.Tensor | None]
_backends: list[IndexAttentionBackend] = []


def register_index_attention_backend(backend: IndexAttentionBackend) -> IndexAttentionBackend:
    """Install a backend tried before the torch reference (usable as a decorator)."""
    _backends.insert(0, backend)
    return backend


def unregister_index_attention_backend(backend: IndexAttentionBackend) -> None:
    """Remove a backend installed with :func:`register_index_attention_backend`."""
    if backend in _backends:
        _backends.remove(backend)


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
    if backend == "auto":
        call = dict(
            scaling=scaling,
            attention_mask=attention_mask,
            s_aux=s_aux,
            dropout=dropout,
            query_chunk_size=query_chunk_size,
        )
        for candidate in _backends:
            out = candidate(queries, keys, values, indices, weights, **call)
            if out is not None:
                return out
        if queries.is_cuda:
            out = _try_triton_decode(queries, keys, values, indices, weights, **call)
            if out is not None:
                return out
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
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    width = indices.shape[-1]
    out = torch.empty((b, hq, q, values.shape[-1]), dtype=queries.dtype, device=queries.device)
    if q == 0:
        return out
    group = hq // hkv
    use_gather = 2 * group * q * width <= k or 16 * width <= k
    if use_gather:
        per_row = max(1, b * hq * max(width, 1) * d)
        chunk = query_chunk_size or max(1, 4 * DEFAULT_CHUNK_ELEMENTS // per_row)
    else:
        chunk = query_chunk_size or max(1, DEFAULT_CHUNK_ELEMENTS // max(1, b * hq * k))
    for start in range(0, q, chunk):
        end = min(q, start + chunk)
        mask_chunk = None if attention_mask is None else attention_mask[:, :, start:end]
        step = _gather_chunk if use_gather else _dense_chunk
        out[:, :, start:end] = step(
            queries[:, :, start:end],
            keys,
            values,
            indices[:, :, start:end],
            None if weights is None else weights[:, :, start:end],
            scaling,
            mask_chunk,
            s_aux,
            dropout,
        )
    return out


def _add_importance_bias(
    logits: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """In place: ``-log(w)`` for attended entries, ``-inf`` for padding / weight 0."""
    if weights is None:  # binary mask: only padding needs masking
        return logits.masked_fill_(indices < 0, float("-inf"))
    # padding carries weight 0 by the Mask contract, so w > 0 alone identifies real entries
    w = weights.float()
    return logits.add_(torch.where(w > 0, torch.log(w).neg_(), float("-inf")))


def gather_kv_rows(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows of ``tensor [B, Hkv, K, D]`` picked by ``indices [B, Hq, Qc, L]`` (query head h
    reads KV head ``h // (Hq // Hkv)``; -1 reads row 0) -> ``[B, Hq, Qc, L, D]``."""
    b, hkv, k, d = tensor.shape
    hq = indices.shape[1]
    group = hq // hkv
    head_of = torch.arange(hq, device=indices.device) // group
    base = (torch.arange(b, device=indices.device).unsqueeze(1) * hkv + head_of) * k
    rows = indices.clamp(min=0) + base.view(b, hq, 1, 1)
    flat = tensor.reshape(b * hkv * k, d)
    # embedding is torch's fastest row gather on CPU (faster than index_select/indexing)
    return torch.nn.functional.embedding(rows.reshape(-1), flat).view(*indices.shape, d)


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
) -> torch.Tensor:
    if indices.shape[-1] >= SORT_BEFORE_GATHER_MIN:
        # Row order is irrelevant to attention; ascending rows make the gathers read memory
        # in order (about 2x faster on the CPU for thousands of scattered rows).
        indices, order = indices.sort(dim=-1)
        if weights is not None:
            weights = weights.gather(-1, order)
    selected_keys = gather_kv_rows(keys, indices)  # [B, Hq, Qc, L, D]
    logits = torch.matmul(queries.unsqueeze(-2), selected_keys.transpose(-1, -2)).squeeze(-2)
    logits = _add_importance_bias(logits.float().mul_(scaling), indices, weights)
    if attention_mask is not None:
        full_shape = (*indices.shape[:3], attention_mask.shape[-1])
        bias = attention_mask.expand(full_shape).gather(-1, indices.clamp(min=0))
        logits.add_(bias.float())
    probs = apply_dropout(softmax_with_sink(logits, s_aux), dropout)
    selected_values = gather_kv_rows(values, indices)
    out = torch.matmul(probs.to(values.dtype).unsqueeze(-2), selected_values).squeeze(-2)
    return out.to(queries.dtype)


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
    scores = grouped_scores(queries, keys[:, :, :limit], scaling)
    logits = _add_importance_bias(scores.gather(-1, safe).float(), indices, weights)
    if attention_mask is not None:
        full_shape = (*indices.shape[:3], attention_mask.shape[-1])
        logits.add_(attention_mask.expand(full_shape).gather(-1, safe).float())
    probs = apply_dropout(softmax_with_sink(logits, s_aux), dropout)
    # reuse the score buffer for the scattered probabilities (no new [.., Qc, K'] allocation);
    # padding has probability 0, so adding it to column 0 changes nothing
    dense_probs = scores if scores.dtype == values.dtype else scores.to(values.dtype)
    dense_probs.zero_().scatter_add_(-1, safe, probs.to(values.dtype))
    return grouped_probs_values(dense_probs, values).to(queries.dtype)


def _try_triton_decode(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    **call: Any,
) -> torch.Tensor | None:
    """The Triton sparse-decode kernel when it applies; None to fall back to torch."""
    if call["dropout"] > 0.0 or queries.shape[2] > TRITON_DECODE_MAX_QUERIES:
        return None  # prefill-sized calls stay on the chunked torch path
    if keys.dtype != queries.dtype or values.dtype != queries.dtype:
        return None
    if weights is None:
        weights = (indices >= 0).to(queries.dtype)
    try:
        from sah_core.kernels.dispatch import sparse_decode_attention
    except ImportError:
        return None
    attention_mask = call["attention_mask"]
    if attention_mask is not None:
        full_shape = (*indices.shape[:3], attention_mask.shape[-1])
        bias = attention_mask.expand(full_shape).gather(-1, indices.clamp(min=0)).float()
        forbidden = torch.isneginf(bias) | (bias <= torch.finfo(bias.dtype).min / 2)
        if not bool(((bias == 0) | forbidden).all()):
            return None  # a finite non-zero bias cannot be folded into the kernel's inputs
        indices = indices.masked_fill(forbidden, -1)
        weights = weights.masked_fill(forbidden, 0.0)
    try:
        return sparse_decode_attention(
            queries, keys, values, indices, weights, call["scaling"], call["s_aux"]
        )
    except (ValueError, RuntimeError) as error:
        logger.debug("Triton sparse decode declined (%s); using the torch reference", error)
        return None
