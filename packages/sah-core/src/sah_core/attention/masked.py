"""Attention under a :class:`~sah_core.mask.Mask`: dispatch on its representation."""

from __future__ import annotations

import torch

from sah_core.attention.dense import dense_attention, dense_mask_attention
from sah_core.attention.index_form import index_attention
from sah_core.mask import Mask


def masked_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: Mask,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    dropout: float = 0.0,
    query_chunk_size: int | None = None,
) -> torch.Tensor:
    """``[B, Hq, Q, D]`` attention output under ``mask`` (additive ``attention_mask`` already
    normalised). Empty and full masks mean dense attention; index form goes through
    :func:`~sah_core.attention.index_form.index_attention`."""
    kind = mask.representation
    if kind in ("empty", "full"):
        return dense_attention(
            queries,
            keys,
            values,
            scaling=scaling,
            attention_mask=attention_mask,
            s_aux=s_aux,
            dropout=dropout,
            query_chunk_size=query_chunk_size,
        )
    if kind == "index":
        indices, weights = mask.index_view()  # weights None: binary mask
        return index_attention(
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
    return dense_mask_attention(
        queries,
        keys,
        values,
        mask._dense_view(),
        scaling=scaling,
        attention_mask=attention_mask,
        s_aux=s_aux,
        dropout=dropout,
        query_chunk_size=query_chunk_size,
    )
