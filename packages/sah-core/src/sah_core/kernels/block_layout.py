"""Block masks for block-sparse prefill: layout checks, conversions and common layouts.

A block mask is a bool tensor ``[Bm, Hm, ceil(Q / block_size), ceil(K / block_size)]``: tile
``(i, j)`` is active when query block ``i`` may attend key block ``j``. ``Bm`` is 1 (shared by
the batch) or ``B``; ``Hm`` is 1 (shared by all heads), ``Hkv`` (one per KV head group) or
``Hq``. Query block ``i`` covers query rows ``[i * block_size, (i + 1) * block_size)`` of the
``Q`` queries; with causal masking the queries are the last ``Q`` positions of the ``K`` keys, so
query row ``r`` sits at absolute position ``K - Q + r`` and sees keys ``0 .. K - Q + r``.
"""

from __future__ import annotations

import torch

from sah_core.kernels._validation import AttentionShapes


def num_blocks(length: int, block_size: int) -> int:
    """Number of ``block_size`` tiles covering ``length`` positions."""
    return (length + block_size - 1) // block_size


def check_block_size(block_size: int) -> None:
    """Validate a tile size."""
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size <= 0:
        raise ValueError(f"block_size is {block_size!r}; must be a positive int (e.g. 64)")


def check_block_mask(block_mask: torch.Tensor, block_size: int, shapes: AttentionShapes) -> None:
    """Validate a block mask against the attention sizes."""
    check_block_size(block_size)
    if block_mask.dim() != 4:
        raise ValueError(
            "block_mask must be 4-D [batch, heads, q_blocks, k_blocks]; got shape "
            f"{tuple(block_mask.shape)}"
        )
    if block_mask.dtype != torch.bool:
        raise ValueError(f"block_mask.dtype is {block_mask.dtype}; must be torch.bool")
    mask_batch, mask_heads, q_blocks, k_blocks = block_mask.shape
    if mask_batch not in (1, shapes.batch):
        raise ValueError(f"block_mask batch size is {mask_batch}; allowed: 1 or {shapes.batch}")
    allowed_heads = sorted({1, shapes.num_kv_heads, shapes.num_q_heads})
    if mask_heads not in allowed_heads:
        raise ValueError(f"block_mask has {mask_heads} heads; allowed: {allowed_heads}")
    expected = (num_blocks(shapes.q_len, block_size), num_blocks(shapes.kv_len, block_size))
    if (q_blocks, k_blocks) != expected:
        raise ValueError(
            f"block_mask tiles are {(q_blocks, k_blocks)}; with block_size={block_size}, "
            f"q_len={shapes.q_len} and kv_len={shapes.kv_len} they must be {expected}"
        )


def check_block_columns(columns: torch.Tensor, block_size: int, shapes: AttentionShapes) -> None:
    """Validate the per-query-block key columns of a block layout:
    bool ``[1 or B, 1 or Hkv or Hq, ceil(Q / block_size), K]``."""
    if columns.dim() != 4 or columns.dtype != torch.bool:
        raise ValueError(
            f"columns has shape {tuple(columns.shape)} and dtype {columns.dtype}; must be a 4-D "
            "bool tensor [batch, heads, q_blocks, kv_len]"
        )
    allowed_heads = sorted({1, shapes.num_kv_heads, shapes.num_q_heads})
    expected = (num_blocks(shapes.q_len, block_size), shapes.kv_len)
    if (
        columns.shape[0] not in (1, shapes.batch)
        or columns.shape[1] not in allowed_heads
        or tuple(columns.shape[2:]) != expected
    ):
        raise ValueError(
            f"columns shape is {tuple(columns.shape)}; allowed: [1 or {shapes.batch}, one of "
            f"{allowed_heads}, {expected[0]}, {expected[1]}]"
        )


def block_mask_from_active_blocks(active_blocks: torch.Tensor, num_key_blocks: int) -> torch.Tensor:
    """Turn per-row lists of active key blocks ``[..., M]`` (padded with -1) into a bool mask.

    Returns ``[..., num_key_blocks]`` bool. Values outside ``[-1, num_key_blocks)`` are rejected.
    """
    if active_blocks.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"active_blocks.dtype is {active_blocks.dtype}; allowed: int64, int32")
    if active_blocks.numel() and (
        int(active_blocks.min()) < -1 or int(active_blocks.max()) >= num_key_blocks
    ):
        raise ValueError(
            f"active_blocks hold values in [{int(active_blocks.min())}, "
            f"{int(active_blocks.max())}]; allowed: -1 (padding) or [0, {num_key_blocks})"
        )
    mask = torch.zeros(
        (*active_blocks.shape[:-1], num_key_blocks + 1),
        dtype=torch.bool,
        device=active_blocks.device,
    )
    # Padding (-1) lands in the extra last column, which is dropped.
    target = torch.where(active_blocks < 0, num_key_blocks, active_blocks).long()
    mask.scatter_(-1, target, True)
    return mask[..., :num_key_blocks]


def active_block_lists(block_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress a bool block mask to ascending lists of active key blocks.

    Returns ``(lists, counts)``: ``lists`` int32 ``[..., max_active]`` with the active key-block
    indices of each row first, in ascending order, then -1; ``counts`` int32 ``[...]``.
    """
    counts = block_mask.sum(dim=-1, dtype=torch.int32)
    max_active = max(int(counts.max()) if counts.numel() else 0, 1)
    # A stable sort on "inactive" puts active tiles first while keeping their order.
    order = torch.argsort((~block_mask).to(torch.int8), dim=-1, stable=True)[..., :max_active]
    slot = torch.arange(max_active, device=block_mask.device)
    lists = torch.where(slot < counts.unsqueeze(-1), order, -1).to(torch.int32)
    return lists.contiguous(), counts.contiguous()


def causal_block_mask(
    q_len: int, kv_len: int, block_size: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """All tiles that hold at least one causally visible (query, key) pair: ``[1, 1, nQb, nKb]``.

    With this mask block-sparse prefill equals dense causal attention.
    """
    check_block_size(block_size)
    q_blocks, k_blocks = num_blocks(q_len, block_size), num_blocks(kv_len, block_size)
    # Last query row of each query block, at absolute position kv_len - q_len + row.
    last_row = torch.clamp(
        (torch.arange(q_blocks, device=device) + 1) * block_size - 1, max=q_len - 1
    )
    last_visible_key = kv_len - q_len + last_row
    first_key = torch.arange(k_blocks, device=device) * block_size
    return (first_key[None, :] <= last_visible_key[:, None])[None, None]


def streaming_block_mask(
    q_len: int,
    kv_len: int,
    block_size: int,
    sink_blocks: int,
    local_blocks: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sink + sliding-window layout (StreamingLLM-style, Xiao et al., 2023) ``[1, 1, nQb, nKb]``.

    Each query block keeps the first ``sink_blocks`` key blocks and the ``local_blocks`` key
    blocks ending at the one holding its last visible key; tiles past causality are dropped.
    """
    for name, value in (("sink_blocks", sink_blocks), ("local_blocks", local_blocks)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} is {value!r}; must be an int >= 0")
    causal = causal_block_mask(q_len, kv_len, block_size, device)[0, 0]
    q_blocks, k_blocks = causal.shape
    last_row = torch.clamp(
        (torch.arange(q_blocks, device=device) + 1) * block_size - 1, max=q_len - 1
    )
    diagonal_block = (kv_len - q_len + last_row) // block_size
    key_block = torch.arange(k_blocks, device=device)
    sink = key_block[None, :] < sink_blocks
    local = (key_block[None, :] > diagonal_block[:, None] - local_blocks) & (
        key_block[None, :] <= diagonal_block[:, None]
    )
    return ((sink | local) & causal)[None, None]
