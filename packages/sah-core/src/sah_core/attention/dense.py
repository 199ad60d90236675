"""Dense attention (no mask, or a dense weight mask), query-chunked, GQA without repeating KV.

``dense_attention`` is the path for empty/full final masks (SDPA when no sink logits are
used, which is the exact same computation) and the reference the metrics compare against;
``dense_mask_attention`` applies a dense ``[B, Hq, Q, K]`` weight mask chunk by chunk.
"""

from __future__ import annotations

import torch

from sah_core.attention.common import attended_key_limit, grouped_scores, plan_chunk_rows
from sah_core.attention.index_form import grouped_probs_values
from sah_core.attention.softmax import apply_dropout, softmax_with_sink


def dense_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    dropout: float = 0.0,
    query_chunk_size: int | None = None,
    use_sdpa: bool = True,
) -> torch.Tensor:
    """Full attention ``[B, Hq, Q, D]`` with an additive mask, optional sinks and dropout."""
    if use_sdpa and s_aux is None and queries.shape[2] > 0:
        mask = attention_mask
        if mask is not None and mask.dtype != queries.dtype:
            mask = mask.to(queries.dtype)
        return torch.nn.functional.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=mask,
            dropout_p=dropout,
            scale=scaling,
            enable_gqa=keys.shape[1] != queries.shape[1],
        )
    return dense_mask_attention(
        queries,
        keys,
        values,
        None,
        scaling=scaling,
        attention_mask=attention_mask,
        s_aux=s_aux,
        dropout=dropout,
        query_chunk_size=query_chunk_size,
    )


def dense_mask_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    weight_mask: torch.Tensor | None,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    dropout: float = 0.0,
    query_chunk_size: int | None = None,
) -> torch.Tensor:
    """Attention with a dense weight mask (``[B, Hq, Q, K]``, 0 = off, p = kept with prob p;
    None = all keys), fp32 softmax, one query chunk at a time."""
    b, hq, q, _ = queries.shape
    k = keys.shape[2]
    out = torch.empty((b, hq, q, values.shape[-1]), dtype=queries.dtype, device=queries.device)
    chunk = plan_chunk_rows(query_chunk_size, b * hq * k)
    for start in range(0, q, chunk):
        end = min(q, start + chunk)
        mask_chunk = None if attention_mask is None else attention_mask[:, :, start:end]
        limit = attended_key_limit(mask_chunk, k)
        if weight_mask is not None:
            nonzero_cols = (weight_mask[:, :, start:end] > 0).flatten(0, -2).any(0).nonzero()
            limit = min(limit, int(nonzero_cols[-1, 0]) + 1 if nonzero_cols.numel() else 0)
        if limit == 0:
            out[:, :, start:end] = 0
            continue
        logits = grouped_scores(queries[:, :, start:end], keys[:, :, :limit], scaling).float()
        if mask_chunk is not None:
            logits.add_(mask_chunk[..., :limit].float())
        if weight_mask is not None:
            w = weight_mask[:, :, start:end, :limit].float()
            logits.add_(torch.where(w > 0, -torch.log(torch.where(w > 0, w, 1.0)), float("-inf")))
        probs = apply_dropout(softmax_with_sink(logits, s_aux), dropout)
        out[:, :, start:end] = grouped_probs_values(probs, values).to(queries.dtype)
    return out
