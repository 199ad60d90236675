"""Numerically safe fp32 softmax with an optional attention-sink logit, shared by all paths."""

from __future__ import annotations

import torch


def softmax_with_sink(logits: torch.Tensor, s_aux: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim of fp32 ``logits [B, H, Qc, N]`` (``-inf`` = absent key).

    ``s_aux`` (``[H]``, gpt-oss style attention sinks) adds one extra logit per head to the
    denominator only. A row with no finite logit and no sink gets all-zero probabilities
    (an output of 0) instead of NaN.
    """
    if s_aux is None:
        # NaN appears only in rows without any finite logit; those rows attend nothing
        return torch.softmax(logits, dim=-1).nan_to_num_(0.0)
    b, h, q, _ = logits.shape
    sink = s_aux.to(device=logits.device, dtype=logits.dtype).view(1, -1, 1, 1)
    with_sink = torch.cat([logits, sink.expand(b, h, q, 1)], dim=-1)
    return torch.softmax(with_sink, dim=-1)[..., :-1]


def apply_dropout(probs: torch.Tensor, dropout: float) -> torch.Tensor:
    """Attention dropout on the probabilities (only when ``dropout > 0``)."""
    if dropout <= 0.0:
        return probs
    return torch.nn.functional.dropout(probs, p=dropout, training=True)
