"""Attention under a :class:`~sah_core.mask.Mask` (through the backend layer)."""

from __future__ import annotations

import torch

from sah_core.attention.backends import run_attention
from sah_core.call_plan import CallPlan
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
    backend: str = "auto",
) -> torch.Tensor:
    """``[B, Hq, Q, D]`` attention output under ``mask``.

    A full mask is dense attention; an **empty mask attends nothing** (output 0, the same as
    a row of an index mask with no key); index form and dense weights go through
    :func:`~sah_core.attention.backends.run_attention`. Inputs are checked as in
    :meth:`CallPlan.build`.
    """
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
    if mask.shape != call.shape:
        raise ValueError(
            f"mask.shape={mask.shape} is not allowed: it must be the call's [B, Hq, Q, K] = "
            f"{call.shape}"
        )
    return run_attention(call, mask, backend)[0]
