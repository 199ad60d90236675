"""The gather strategy of the torch reference as one CPU kernel call (decode-sized calls).

The torch formulation of index attention with few query rows is about a dozen ops (clamp
the indices, flat row numbers, two row gathers, two small matmuls, the importance bias,
the attention-mask gather, the softmax); on the CPU each costs a dispatch of several
microseconds, more than the arithmetic at decode. This kernel reads each selected key and
value row once, straight from the cache, and computes the same softmax: logit
``scaling * q . k_j - log(w_j) + attention_mask[j]``, fp32, an optional sink logit per head,
0 for a row that attends nothing, NaN kept.

It runs for fp32 CPU tensors without autograd or dropout, when one (batch row, head) has at
most :data:`FUSED_MAX_ROW_WORK` multiply-adds (decode and short question prefills): the
condition does not depend on the batch size, so a row alone and the same row in a batch
take the same code. Everything else takes the torch ops (``index_form``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

#: Largest ``query rows * index width * head dim`` per (batch row, head) the kernel takes.
FUSED_MAX_ROW_WORK = 1 << 20

_PLACEHOLDER_F = np.zeros((1, 1, 1, 1), np.float32)
_PLACEHOLDER_SINK = np.zeros(1, np.float32)


@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    from sah_core.attention._fused_gather_numba import fused_gather_attention

    return fused_gather_attention


def fused_gather_applies(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    dropout: float,
) -> bool:
    """True when :func:`fused_gather_attention` runs this call (see module doc)."""
    return (
        dropout <= 0.0
        and queries.device.type == "cpu"
        and queries.dtype == keys.dtype == values.dtype == torch.float32
        and indices.dtype == torch.int64
        and not (queries.requires_grad or keys.requires_grad or values.requires_grad)
        and queries.shape[2] * indices.shape[-1] * queries.shape[-1] <= FUSED_MAX_ROW_WORK
    )


def _array(tensor: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> Any:
    if tensor is None:
        return _PLACEHOLDER_F
    if tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor.detach().numpy()


def fused_gather_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
    slot_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Index attention ``[B, Hq, Q, Dv]`` (inputs as in
    :func:`~sah_core.attention.index_form.index_attention`); ``scores`` (``[B, Hq, Q, K']``,
    every index below ``K'``) are the ``scaling * q . k`` a masker computed, read instead of
    the keys; ``slot_logits`` (``[B, Hq, Q, L]``) the logits of every index entry with the
    attention mask added, read instead of keys and mask."""
    b, hq, q, _ = queries.shape
    out = torch.empty((b, hq, q, values.shape[-1]), dtype=torch.float32)
    if out.numel() == 0:
        return out
    bias = None
    if attention_mask is not None and slot_logits is None:
        bias = attention_mask.expand(b, hq, q, keys.shape[2])
    flags = np.array(
        [
            weights is not None,
            bias is not None,
            scores is not None,
            slot_logits is not None,
            s_aux is not None,
        ],
        np.bool_,
    )
    sink = _PLACEHOLDER_SINK if s_aux is None else _array(s_aux.reshape(-1))
    from sah_core.attention.index_form import kv_cache_rows  # (index_form imports this module)

    keys_rows, key_pitch = kv_cache_rows(keys)
    values_rows, value_pitch = kv_cache_rows(values)
    _kernel()(
        queries.contiguous().numpy(),
        keys_rows.numpy(),
        values_rows.numpy(),
        keys.shape[1],
        key_pitch,
        value_pitch,
        indices.contiguous().numpy(),
        _array(weights),
        _array(bias),
        _array(scores),
        _array(slot_logits),
        sink,
        np.float32(scaling),
        flags,
        out.numpy(),
    )
    return out
