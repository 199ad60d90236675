"""Shape and dtype checks shared by the reference kernels, the Triton kernels and the dispatcher.

Every check raises ``ValueError`` naming the field, the value it got and what is allowed, so a
caller wiring a new selector into the kernels learns which tensor is off and how.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPES: tuple[torch.dtype, ...] = (torch.int64, torch.int32)


@dataclass(frozen=True)
class AttentionShapes:
    """Sizes read off ``queries [B, Hq, Q, D]`` and ``keys [B, Hkv, K, D]``."""

    batch: int
    num_q_heads: int
    num_kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 for MHA, ``Hq`` for MQA)."""
        return self.num_q_heads // self.num_kv_heads


def check_qkv(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scaling: float
) -> AttentionShapes:
    """Validate ``queries``/``keys``/``values`` and return their sizes."""
    for name, tensor in (("queries", queries), ("keys", keys), ("values", values)):
        if tensor.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D [batch, heads, length, head_dim]; got shape "
                f"{tuple(tensor.shape)}"
            )
        if tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"{name}.dtype is {tensor.dtype}; allowed: float16, bfloat16, float32")
    if keys.dtype != queries.dtype or values.dtype != queries.dtype:
        raise ValueError(
            f"queries, keys and values must share a dtype; got {queries.dtype}, {keys.dtype}, "
            f"{values.dtype}"
        )
    if keys.shape != values.shape:
        raise ValueError(
            f"keys and values must have the same shape; got {tuple(keys.shape)} and "
            f"{tuple(values.shape)}"
        )
    batch, num_q_heads, q_len, head_dim = queries.shape
    k_batch, num_kv_heads, kv_len, k_dim = keys.shape
    if k_batch != batch:
        raise ValueError(f"keys batch size is {k_batch}; must equal queries batch size {batch}")
    if k_dim != head_dim:
        raise ValueError(f"keys head_dim is {k_dim}; must equal queries head_dim {head_dim}")
    if num_kv_heads == 0 or num_q_heads % num_kv_heads != 0:
        raise ValueError(
            f"number of query heads ({num_q_heads}) must be a multiple of the number of KV "
            f"heads ({num_kv_heads})"
        )
    if not queries.device == keys.device == values.device:
        raise ValueError(
            f"queries, keys and values must be on one device; got {queries.device}, "
            f"{keys.device}, {values.device}"
        )
    if not isinstance(scaling, int | float) or not scaling > 0:
        raise ValueError(f"scaling is {scaling!r}; must be a positive float")
    return AttentionShapes(batch, num_q_heads, num_kv_heads, q_len, kv_len, head_dim)


def check_index_mask(
    indices: torch.Tensor, weights: torch.Tensor, shapes: AttentionShapes, device: torch.device
) -> None:
    """Validate an index-form mask against the attention sizes.

    ``indices`` and ``weights`` are ``[B, H, Q, L]`` with ``H`` either the number of query heads
    (one list per query head) or the number of KV heads (one list shared by a head group).
    """
    if indices.dim() != 4:
        raise ValueError(
            f"indices must be 4-D [batch, heads, q_len, L]; got shape {tuple(indices.shape)}"
        )
    if indices.dtype not in INDEX_DTYPES:
        raise ValueError(f"indices.dtype is {indices.dtype}; allowed: int64, int32")
    if weights.shape != indices.shape:
        raise ValueError(
            f"weights shape {tuple(weights.shape)} must equal indices shape {tuple(indices.shape)}"
        )
    if not weights.is_floating_point():
        raise ValueError(f"weights.dtype is {weights.dtype}; must be a floating dtype")
    batch, heads, q_len, _ = indices.shape
    if batch != shapes.batch:
        raise ValueError(f"indices batch size is {batch}; must be {shapes.batch}")
    if heads not in (shapes.num_q_heads, shapes.num_kv_heads):
        raise ValueError(
            f"indices has {heads} heads; allowed: {shapes.num_q_heads} (one list per query "
            f"head) or {shapes.num_kv_heads} (one list per KV head group)"
        )
    if q_len != shapes.q_len:
        raise ValueError(f"indices q_len is {q_len}; must equal queries q_len {shapes.q_len}")
    if indices.device != device or weights.device != device:
        raise ValueError(
            f"indices ({indices.device}) and weights ({weights.device}) must be on the "
            f"queries' device {device}"
        )


def check_sinks(sinks: torch.Tensor | None, shapes: AttentionShapes) -> None:
    """Validate optional per-head attention-sink logits ``[Hq]``."""
    if sinks is None:
        return
    if sinks.shape != (shapes.num_q_heads,):
        raise ValueError(
            f"sinks shape is {tuple(sinks.shape)}; must be ({shapes.num_q_heads},), one logit "
            "per query head"
        )
    if not sinks.is_floating_point():
        raise ValueError(f"sinks.dtype is {sinks.dtype}; must be a floating dtype")


def check_indices_in_range(indices: torch.Tensor, kv_len: int) -> None:
    """Raise if any index lies outside ``[-1, kv_len)`` (costs a device sync on CUDA)."""
    if indices.numel() == 0:
        return
    low = int(indices.min())
    high = int(indices.max())
    if low < -1 or high >= kv_len:
        raise ValueError(
            f"indices hold values in [{low}, {high}]; allowed: -1 (padding) or a key index in "
            f"[0, {kv_len})"
        )
