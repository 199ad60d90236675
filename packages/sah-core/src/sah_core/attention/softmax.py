"""Numerically safe fp32 softmax with an optional attention-sink logit, shared by all paths."""

from __future__ import annotations

import torch


def softmax_with_sink(logits: torch.Tensor, s_aux: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim of fp32 ``logits [B, H, Qc, N]`` (``-inf`` = absent key).

    ``s_aux`` (``[H]``, gpt-oss style attention sinks) adds one extra logit per head to the
    denominator only. A row with no finite logit and no sink gets all-zero probabilities
    (an output of 0) instead of NaN.
    """
    row_max = logits.amax(dim=-1, keepdim=True)
    if s_aux is not None:
        sink = s_aux.to(device=logits.device, dtype=logits.dtype).view(1, -1, 1, 1)
        row_max = torch.maximum(row_max, sink)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp = torch.exp(logits - row_max)
    denom = exp.sum(dim=-1, keepdim=True)
    if s_aux is not None:
        denom = denom + torch.exp(sink - row_max)
    return exp / denom.clamp_min(torch.finfo(logits.dtype).tiny)


def apply_dropout(probs: torch.Tensor, dropout: float) -> torch.Tensor:
    """Attention dropout on the probabilities (only when ``dropout > 0``)."""
    if dropout <= 0.0:
        return probs
    return torch.nn.functional.dropout(probs, p=dropout, training=True)
