"""Numerically safe fp32 softmax with an optional attention-sink logit, shared by all paths."""

from __future__ import annotations

import torch


def softmax_with_sink(
    logits: torch.Tensor, s_aux: torch.Tensor | None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax over the last dim of fp32 ``logits [B, H, Qc, N]`` (``-inf`` = absent key).

    ``s_aux`` (``[H]``, gpt-oss style attention sinks) adds one extra logit per head to the
    denominator only. A row whose every logit is ``-inf`` (nothing attended) and that has no
    sink gets all-zero probabilities (output 0); a NaN logit propagates to its row, as in
    dense attention. ``out`` (same shape; used without ``s_aux``) receives the result.
    """
    if s_aux is None:
        probs = torch.softmax(logits, dim=-1) if out is None else torch.softmax(logits, -1, out=out)
        if logits.shape[-1] == 0:
            return probs
        # only fully masked rows (max = -inf) become 0; amax propagates NaN, so a row that
        # holds a NaN score keeps its NaN, as dense attention does
        return probs.masked_fill_(torch.isneginf(logits.amax(-1, keepdim=True)), 0.0)
    b, h, q, _ = logits.shape
    sink = s_aux.to(device=logits.device, dtype=logits.dtype).view(1, -1, 1, 1)
    with_sink = torch.cat([logits, sink.expand(b, h, q, 1)], dim=-1)
    return torch.softmax(with_sink, dim=-1)[..., :-1]


def apply_dropout(probs: torch.Tensor, dropout: float) -> torch.Tensor:
    """Attention dropout on the probabilities (only when ``dropout > 0``)."""
    if dropout <= 0.0:
        return probs
    return torch.nn.functional.dropout(probs, p=dropout, training=True)
