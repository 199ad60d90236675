"""Exact dense attention with the transformers attention-function signature.

Used by the adapter's registration probe and by sparse mode of an adapter without a sparse
config, so those paths run through the registry and still compute plain softmax attention.
"""

from __future__ import annotations

from typing import Any

import torch


def reference_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """softmax(q kᵀ · scaling + mask) v; query [B,Hq,Q,D], key/value [B,Hkv,K,D] → [B,Q,Hq,D].

    ``attention_mask`` is additive (float) or boolean (True = attend), broadcastable to
    [B, 1|Hq, Q, K]; it already carries causality and any sliding window.
    """
    del module, dropout, kwargs  # inference only: no dropout
    group = query.shape[1] // key.shape[1]
    if group > 1:  # grouped-query attention: each KV head serves `group` query heads
        key = key.repeat_interleave(group, dim=1)
        value = value.repeat_interleave(group, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scaling
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None
