"""Small helpers shared by maskers and attention paths: attention-mask handling, chunking."""

from __future__ import annotations

from typing import Any

import torch

#: Target number of float elements in one ``[B, H, Qc, K]`` working tensor (≈16 MiB fp32).
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def normalize_attention_mask(
    attention_mask: torch.Tensor | None, key_len: int
) -> torch.Tensor | None:
    """Return an additive float mask ``[B|1, H|1, Q, K]`` (0 = attend, -inf = masked) or None.

    Accepts the transformers conventions: an additive float mask (masked entries hold the
    dtype's minimum or -inf) or a bool mask (True = attend). A key dimension longer than the
    keys (a static cache) is cut to ``key_len``.
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() != 4:
        raise ValueError(
            f"attention_mask.dim()={attention_mask.dim()} is not allowed: expected a 4-D "
            "[B, 1, Q, K] mask"
        )
    if attention_mask.shape[-1] < key_len:
        raise ValueError(
            f"attention_mask.shape[-1]={attention_mask.shape[-1]} is not allowed: it must be "
            f">= the key length {key_len}"
        )
    mask = attention_mask[..., :key_len]
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=torch.float32, device=mask.device)
        return torch.where(mask, zero, float("-inf"))
    return mask


def masked_keys(attention_mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor, True where an (additive or bool) attention mask forbids the key."""
    if attention_mask.dtype == torch.bool:
        return ~attention_mask
    # transformers fills masked entries with finfo(dtype).min; -inf is also accepted.
    threshold = torch.finfo(attention_mask.dtype).min / 2
    return attention_mask <= threshold


def attended_key_limit(attention_mask: torch.Tensor | None, key_len: int) -> int:
    """1 + the last key column any row of this (chunk of the) mask may attend; ``key_len``
    without a mask. Lets causal prefill skip the future part of the key axis."""
    if attention_mask is None or attention_mask.shape[-1] == 0:
        return key_len
    if attention_mask.dtype == torch.bool:
        allowed_cols = attention_mask.flatten(0, -2).any(0)
    else:
        # one reduction pass: a column is usable when its largest entry is not "masked"
        column_max = attention_mask.flatten(0, -2).amax(0)
        allowed_cols = column_max > torch.finfo(attention_mask.dtype).min / 2
    nonzero = allowed_cols.nonzero()
    if nonzero.numel() == 0:
        return 0
    return int(nonzero[-1, 0]) + 1


def plan_chunk_rows(requested: int | None, row_elements: int) -> int:
    """Rows per query chunk: ``requested`` when given, else what keeps one working tensor of
    ``row_elements`` elements per row near :data:`DEFAULT_CHUNK_ELEMENTS`. The one place the
    chunk formula lives (``CallPlan`` and every attention path use it)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(
                f"query_chunk_size={requested!r} is not allowed: use a positive int or None"
            )
        return requested
    return max(1, DEFAULT_CHUNK_ELEMENTS // max(1, row_elements))


def query_chunk_size(kwargs: dict[str, Any], rows_width: int) -> int:
    """Rows per query chunk from the old ``**kwargs`` (``kwargs["query_chunk_size"]`` or the
    default budget); ``rows_width`` is what one query row contributes (``B * H * K``).
    New code reads ``CallPlan.query_chunks()`` instead."""
    return plan_chunk_rows(kwargs.get("query_chunk_size"), rows_width)


def query_positions(
    num_queries: int, key_len: int, kwargs: dict[str, Any], device: torch.device
) -> torch.Tensor:
    """Absolute key position of each query, int64 ``[Q]``.

    ``kwargs["query_positions"]`` when given (a tensor or sequence of length Q); otherwise
    the queries are taken to be the last Q tokens of the key sequence (prefill and decode
    with a KV cache both satisfy this).
    """
    given = kwargs.get("query_positions")
    if given is None:
        return torch.arange(key_len - num_queries, key_len, device=device)
    positions = torch.as_tensor(given, device=device, dtype=torch.int64).reshape(-1)
    if positions.numel() != num_queries:
        raise ValueError(
            f"query_positions has {positions.numel()} entries, which is not allowed: expected "
            f"one per query ({num_queries})"
        )
    return positions


def grouped_scores(queries: torch.Tensor, keys: torch.Tensor, scaling: float) -> torch.Tensor:
    """``scaling * q @ k^T`` for GQA without repeating K: ``[B, Hq, Q, D] x [B, Hkv, K, D]``
    -> ``[B, Hq, Q, K]`` (query head h reads KV head ``h // (Hq // Hkv)``), in one batched
    matmul over ``[B, Hkv, G*Q, D]``."""
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    if scaling != 1.0:
        queries = queries * scaling  # scale the small operand, not the [.., Q, K] product
    grouped = queries.reshape(b, hkv, group * q, d)
    scores = torch.matmul(grouped, keys.transpose(-1, -2))
    return scores.view(b, hq, q, k)


def grouped_scores_into(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, buffer: torch.Tensor
) -> torch.Tensor:
    """:func:`grouped_scores` written into the front of ``buffer`` (flat, the queries' dtype,
    at least ``B * Hq * Q * K`` elements): a loop over query chunks reuses one allocation
    instead of a fresh ``[B, Hq, Qc, K]`` tensor (and its page faults) per chunk."""
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    if scaling != 1.0:
        queries = queries * scaling
    grouped = queries.reshape(b, hkv, group * q, d)
    out = buffer[: b * hq * q * k].view(b, hkv, group * q, k)
    torch.matmul(grouped, keys.transpose(-1, -2), out=out)
    return out.view(b, hq, q, k)


#: ``CallPlan._shared`` key of the logits a masker kept for its index-form mask
_INDEX_LOGITS = "index_logits"


def remember_index_logits(
    call: Any, mask: Any, logits: torch.Tensor, dense_prefix: int = 0
) -> None:
    """Record, for ``call``, the logits ``scaling * q . k_j + attention_mask[j]`` (fp32,
    ``[B, Hq, Q, L]``, ``-inf`` at padding) of every entry of the index-form ``mask``: the
    reference attention then reads them instead of recomputing ``q . K`` (a top-k masker over
    the exact logits computes them anyway). Only this very mask object matches.
    ``dense_prefix``: the first entries of every row are the keys ``0 .. dense_prefix - 1``
    (a sink), which the attention may then handle as one dense block."""
    call._shared[_INDEX_LOGITS] = (mask, logits, dense_prefix)


def index_logits(call: Any, mask: Any) -> torch.Tensor | None:
    """The logits :func:`remember_index_logits` kept for ``mask`` (this object), or None."""
    entry = call._shared.get(_INDEX_LOGITS)
    if entry is None or entry[0] is not mask:
        return None
    logits: torch.Tensor = entry[1]
    return logits


def index_logits_prefix(call: Any, mask: Any) -> int:
    """The ``dense_prefix`` recorded with :func:`index_logits` for ``mask`` (0: none)."""
    entry = call._shared.get(_INDEX_LOGITS)
    if entry is None or entry[0] is not mask:
        return 0
    return int(entry[2])
