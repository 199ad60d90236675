"""Torch reference implementations: the semantics every attention kernel here must match.

``sparse_decode_attention_reference`` maps the kernel's conventions onto the research path's
torch index-form attention (one torch reference per operation); the block-sparse reference is
written plainly. Conventions shared with the Triton kernels:

* importance weighting: a selected key with keep-probability ``p`` has its exp-score
  multiplied by ``1 / p``, i.e. ``-log p`` is added to its logit; an entry is selected when its
  index is ``>= 0`` and its weight is ``> 0`` (padding is ``-1`` with weight 0, anywhere in the
  row);
* GQA: query head ``h`` reads KV head ``h // (Hq // Hkv)``;
* attention sinks (gpt-oss style): one extra logit per query head joins the softmax
  denominator and contributes nothing to the output;
* a row that attends to no key outputs zeros (instead of the NaN of an all ``-inf`` softmax);
* softmax and accumulation in fp32, output in the query dtype.
"""

from __future__ import annotations

import torch

from sah_core.kernels._validation import (
    check_index_mask,
    check_indices_in_range,
    check_qkv,
    check_sinks,
)
from sah_core.kernels.block_layout import check_block_mask, check_block_size


def _softmax_weighted_sum(
    logits: torch.Tensor, values: torch.Tensor, sinks: torch.Tensor | None
) -> torch.Tensor:
    """``softmax(logits) @ values`` in fp32 with optional sinks; all-masked rows give zeros.

    ``logits`` is ``[B, Hq, Q, N]`` (``-inf`` where not attended), ``values`` is
    ``[B, Hq, Q, N, D]`` or ``[B, Hq, N, D]``.
    """
    if logits.shape[-1] == 0:  # nothing to attend (empty index lists): zeros
        return logits.new_zeros((*logits.shape[:-1], values.shape[-1]))
    row_max = logits.amax(dim=-1, keepdim=True)
    if sinks is not None:
        sink_logits = sinks.float().view(1, -1, 1, 1)
        row_max = torch.maximum(row_max, sink_logits)
    # A row with nothing attended has max -inf; shift by 0 so exp gives 0, not NaN.
    row_max = torch.where(torch.isinf(row_max), torch.zeros_like(row_max), row_max)
    exp_scores = torch.exp(logits - row_max)
    denominator = exp_scores.sum(dim=-1, keepdim=True)
    if sinks is not None:
        denominator = denominator + torch.exp(sink_logits - row_max)
    probabilities = exp_scores / torch.where(denominator > 0, denominator, 1.0)
    if values.dim() == 5:
        return torch.einsum("bhqn,bhqnd->bhqd", probabilities, values.float())
    return torch.einsum("bhqn,bhnd->bhqd", probabilities, values.float())


def sparse_decode_attention_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    scaling: float,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of each query row over its own list of selected keys (index-form mask).

    Args:
        queries: ``[B, Hq, Q, D]``.
        keys, values: ``[B, Hkv, K, D]``, ``Hq % Hkv == 0``.
        indices: int64/int32 ``[B, Hi, Q, L]`` selected key indices, ``-1`` = padding;
            ``Hi == Hq`` (a list per query head) or ``Hi == Hkv`` (a list per KV head, shared by
            its query-head group).
        weights: float ``[B, Hi, Q, L]`` keep-probability ``p`` in (0, 1] per entry (0 at
            padding); the key's exp-score is multiplied by ``1 / p``.
        scaling: multiplier of ``q . k`` (usually ``D ** -0.5``).
        sinks: optional ``[Hq]`` attention-sink logits.

    Returns:
        ``[B, Hq, Q, D]`` in the query dtype.
    """
    shapes = check_qkv(queries, keys, values, scaling)
    check_index_mask(indices, weights, shapes, queries.device)
    check_sinks(sinks, shapes)
    check_indices_in_range(indices, shapes.kv_len)
    # One torch reference per operation: this is the research path's index-form attention
    # (sah_core.attention.index_form), after the kernel's input conventions are mapped.
    from sah_core.attention.index_form import index_attention_reference

    if indices.shape[1] == shapes.num_kv_heads and shapes.group_size > 1:
        indices = indices.repeat_interleave(shapes.group_size, dim=1)
        weights = weights.repeat_interleave(shapes.group_size, dim=1)
    indices = indices.to(torch.int64)
    # an entry is attended when its index is >= 0 and its weight > 0 (weight 0 = padding)
    weights = torch.where(indices >= 0, weights.float(), 0.0)
    return index_attention_reference(
        queries, keys, values, indices, weights, scaling=float(scaling), s_aux=sinks
    )


def block_sparse_prefill_attention_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    block_mask: torch.Tensor,
    scaling: float,
    block_size: int = 64,
    causal: bool = True,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention restricted to the active ``block_size`` x ``block_size`` tiles of a block mask.

    Args:
        queries: ``[B, Hq, Q, D]``; with ``causal`` they are the last ``Q`` of the ``K``
            positions (query row ``r`` sees keys ``0 .. K - Q + r``).
        keys, values: ``[B, Hkv, K, D]``.
        block_mask: bool ``[1 or B, 1 or Hkv or Hq, ceil(Q / block_size), ceil(K / block_size)]``
            (see :mod:`sah_core.kernels.block_layout`).
        scaling: multiplier of ``q . k``.
        block_size: tile edge in tokens.
        causal: also mask keys after each query's position (inside diagonal tiles).
        sinks: optional ``[Hq]`` attention-sink logits.

    Returns:
        ``[B, Hq, Q, D]`` in the query dtype.
    """
    shapes = check_qkv(queries, keys, values, scaling)
    check_block_size(block_size)
    check_block_mask(block_mask, block_size, shapes)
    check_sinks(sinks, shapes)
    group, q_len, kv_len = shapes.group_size, shapes.q_len, shapes.kv_len

    mask_heads = block_mask.shape[1]
    head_of_mask = torch.arange(shapes.num_q_heads, device=block_mask.device)
    head_of_mask = head_of_mask * mask_heads // shapes.num_q_heads
    tiles = block_mask[:, head_of_mask].expand(shapes.batch, -1, -1, -1)
    query_block = torch.arange(q_len, device=queries.device) // block_size
    key_block = torch.arange(kv_len, device=queries.device) // block_size
    allowed = tiles[:, :, query_block][:, :, :, key_block]
    if causal:
        query_position = torch.arange(q_len, device=queries.device) + (kv_len - q_len)
        key_position = torch.arange(kv_len, device=queries.device)
        allowed = allowed & (key_position[None, :] <= query_position[:, None])

    keys_per_query_head = keys.repeat_interleave(group, dim=1).float()
    values_per_query_head = values.repeat_interleave(group, dim=1)
    logits = torch.einsum("bhqd,bhkd->bhqk", queries.float(), keys_per_query_head) * scaling
    logits = logits.masked_fill(~allowed, float("-inf"))
    return _softmax_weighted_sum(logits, values_per_query_head, sinks).to(queries.dtype)
