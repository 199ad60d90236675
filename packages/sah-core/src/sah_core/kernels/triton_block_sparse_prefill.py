"""Triton block-sparse prefill attention: FlashAttention over the active tiles only.

One program per (query tile, batch x query head) walks the ascending list of active key tiles
of its query tile (a compressed block mask), keeping an online softmax in fp32 (FlashAttention,
Dao et al., 2022); tiles that cross the causal diagonal are masked element-wise. The
block-sparse tile walk follows the block-sparse FlashAttention idea of the same paper and of
later block-sparse prefill methods (e.g. MInference, Jiang et al., 2024). Attention sinks seed
the running max/denominator so they only enlarge the softmax denominator.

This module imports Triton at import time; :mod:`sah_core.kernels.dispatch` imports it lazily.
"""
# mypy: disable-error-code="no-untyped-def,no-untyped-call,misc,untyped-decorator"

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from sah_core.kernels._triton_support import interpreting, next_power_of_2
from sah_core.kernels.block_layout import active_block_lists

LOG2_E = math.log2(math.e)


@triton.jit
def _block_sparse_prefill_kernel(
    Q,
    K,
    V,
    LISTS,
    COUNTS,
    COLS,
    COL_COUNTS,
    SINKS,
    OUT,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    num_q_heads,
    group_size,
    mask_batch,
    mask_heads,
    num_q_blocks,
    max_active,
    max_cols,
    q_len,
    kv_len,
    head_dim,
    scale_log2,
    CAUSAL: tl.constexpr,
    HAS_SINKS: tl.constexpr,
    HAS_COLS: tl.constexpr,
    NATIVE_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    q_block = tl.program_id(0)
    batch_head = tl.program_id(1)
    batch = batch_head // num_q_heads
    q_head = batch_head % num_q_heads
    kv_head = q_head // group_size
    mask_b = batch if mask_batch > 1 else 0
    mask_h = q_head * mask_heads // num_q_heads
    list_row = (mask_b * mask_heads + mask_h) * num_q_blocks + q_block

    rows = q_block * BLOCK + tl.arange(0, BLOCK)
    row_in_range = rows < q_len
    dim_offsets = tl.arange(0, BLOCK_D)
    dim_in_range = dim_offsets < head_dim
    q = tl.load(
        Q
        + batch * stride_qb
        + q_head * stride_qh
        + rows[:, None] * stride_qm
        + dim_offsets[None, :],
        mask=row_in_range[:, None] & dim_in_range[None, :],
        other=0.0,
    )
    if not NATIVE_DOT:
        q = q.to(tl.float32)
    k_base = K + batch * stride_kb + kv_head * stride_kh
    v_base = V + batch * stride_vb + kv_head * stride_vh
    # Queries are the last q_len of kv_len positions (bottom-right causal alignment).
    query_position = rows + (kv_len - q_len)

    if HAS_SINKS:
        # Seeding with the sink logit adds exp(sink) to the denominator and nothing to acc.
        sink_log2 = tl.load(SINKS + q_head).to(tl.float32) * 1.4426950408889634
        running_max = tl.zeros((BLOCK,), dtype=tl.float32) + sink_log2
        running_sum = tl.full((BLOCK,), 1.0, dtype=tl.float32)
    else:
        running_max = tl.full((BLOCK,), float("-inf"), dtype=tl.float32)
        running_sum = tl.zeros((BLOCK,), dtype=tl.float32)
    acc = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)

    count = tl.load(COUNTS + list_row)
    for slot in range(0, count):
        key_block = tl.load(LISTS + list_row.to(tl.int64) * max_active + slot)
        cols = key_block * BLOCK + tl.arange(0, BLOCK)
        col_in_range = cols < kv_len
        kv_mask = col_in_range[:, None] & dim_in_range[None, :]
        k = tl.load(
            k_base + cols[:, None] * stride_kn + dim_offsets[None, :], mask=kv_mask, other=0.0
        )
        if not NATIVE_DOT:
            k = k.to(tl.float32)
        if NATIVE_DOT:
            scores = tl.dot(q, tl.trans(k))
        else:
            scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        visible = col_in_range[None, :] & row_in_range[:, None]
        if CAUSAL:
            visible = visible & (cols[None, :] <= query_position[:, None])
        logits = tl.where(visible, scores * scale_log2, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(logits, axis=1))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        rescale = tl.exp2(running_max - shift)
        probs = tl.exp2(logits - shift[:, None])
        running_sum = running_sum * rescale + tl.sum(probs, axis=1)
        v = tl.load(
            v_base + cols[:, None] * stride_vn + dim_offsets[None, :], mask=kv_mask, other=0.0
        )
        if NATIVE_DOT:
            update = tl.dot(probs.to(v.dtype), v)
        else:
            update = tl.dot(probs, v.to(tl.float32), input_precision=DOT_PRECISION)
        acc = acc * rescale[:, None] + update
        running_max = new_max

    if HAS_COLS:
        # Single key columns of this query block (vertical lines), BLOCK gathered keys at a time.
        col_count = tl.load(COL_COUNTS + list_row)
        for start in range(0, col_count, BLOCK):
            offsets = start + tl.arange(0, BLOCK)
            cols = tl.load(
                COLS + list_row.to(tl.int64) * max_cols + offsets,
                mask=offsets < col_count,
                other=-1,
            )
            col_ok = (cols >= 0) & (cols < kv_len)
            kv_mask = col_ok[:, None] & dim_in_range[None, :]
            k = tl.load(
                k_base + cols[:, None] * stride_kn + dim_offsets[None, :], mask=kv_mask, other=0.0
            )
            if not NATIVE_DOT:
                k = k.to(tl.float32)
            if NATIVE_DOT:
                scores = tl.dot(q, tl.trans(k))
            else:
                scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
            visible = col_ok[None, :] & row_in_range[:, None]
            if CAUSAL:
                visible = visible & (cols[None, :] <= query_position[:, None])
            logits = tl.where(visible, scores * scale_log2, float("-inf"))
            new_max = tl.maximum(running_max, tl.max(logits, axis=1))
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            rescale = tl.exp2(running_max - shift)
            probs = tl.exp2(logits - shift[:, None])
            running_sum = running_sum * rescale + tl.sum(probs, axis=1)
            v = tl.load(
                v_base + cols[:, None] * stride_vn + dim_offsets[None, :], mask=kv_mask, other=0.0
            )
            if NATIVE_DOT:
                update = tl.dot(probs.to(v.dtype), v)
            else:
                update = tl.dot(probs, v.to(tl.float32), input_precision=DOT_PRECISION)
            acc = acc * rescale[:, None] + update
            running_max = new_max

    out = acc / tl.where(running_sum > 0.0, running_sum, 1.0)[:, None]
    tl.store(
        OUT
        + ((batch * num_q_heads + q_head) * q_len + rows)[:, None].to(tl.int64) * head_dim
        + dim_offsets[None, :],
        out.to(OUT.dtype.element_ty),
        mask=row_in_range[:, None] & dim_in_range[None, :],
    )


def launch_options(block_size: int, fp32: bool) -> dict[str, int]:
    """Warps and pipeline stages per tile size and dtype.

    Checked by compiling for sm_90 (tests/kernels/test_gpu_compilation.py): these fit the
    registers and shared memory; fp32 "ieee" dots are register-heavy, so fp32 (the rare prefill
    dtype) runs unpipelined.
    """
    return {
        "num_warps": 8 if block_size >= 64 else 4,
        "num_stages": 1 if fp32 else (3 if block_size <= 64 else 2),
    }


def block_sparse_prefill_attention_triton(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    block_mask: torch.Tensor,
    scaling: float,
    block_size: int = 64,
    causal: bool = True,
    sinks: torch.Tensor | None = None,
    columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triton version of the block-sparse prefill reference; inputs are assumed validated.

    ``block_size`` must be a power of two >= 16 (it is the kernel's tile edge). ``columns``
    (bool ``[Bm, Hm, nQb, K]``, optional) adds single key columns per query block; they must not
    lie in an active tile of their block (the dispatcher removes those).
    """
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(
            f"block_size is {block_size}; the Triton prefill kernel needs a power of two >= 16"
        )
    batch, num_q_heads, q_len, head_dim = queries.shape
    num_kv_heads, kv_len = keys.shape[1], keys.shape[2]
    queries, keys, values = (
        t if t.stride(-1) == 1 else t.contiguous() for t in (queries, keys, values)
    )
    if columns is not None and tuple(columns.shape[:2]) != tuple(block_mask.shape[:2]):
        raise ValueError(
            f"columns batch/heads {tuple(columns.shape[:2])} must equal the block mask's "
            f"{tuple(block_mask.shape[:2])} (the dispatcher lays both out per query head)"
        )
    lists, counts = active_block_lists(block_mask)
    mask_batch, mask_heads, num_q_blocks, max_active = lists.shape
    if columns is not None:
        col_lists, col_counts = active_block_lists(columns)
        max_cols = col_lists.shape[-1]
    else:
        col_lists, col_counts, max_cols = counts, counts, 1
    out = torch.empty(
        (batch, num_q_heads, q_len, head_dim), dtype=queries.dtype, device=queries.device
    )
    if out.numel() == 0:
        return out
    native_dot = queries.dtype != torch.float32 and not interpreting()
    grid = (num_q_blocks, batch * num_q_heads)
    _block_sparse_prefill_kernel[grid](
        queries,
        keys,
        values,
        lists,
        counts,
        col_lists,
        col_counts,
        sinks.contiguous() if sinks is not None else counts,
        out,
        queries.stride(0),
        queries.stride(1),
        queries.stride(2),
        keys.stride(0),
        keys.stride(1),
        keys.stride(2),
        values.stride(0),
        values.stride(1),
        values.stride(2),
        num_q_heads,
        num_q_heads // num_kv_heads,
        mask_batch,
        mask_heads,
        num_q_blocks,
        max_active,
        max_cols,
        q_len,
        kv_len,
        head_dim,
        scaling * LOG2_E,
        CAUSAL=causal,
        HAS_SINKS=sinks is not None,
        HAS_COLS=columns is not None,
        NATIVE_DOT=native_dot,
        DOT_PRECISION="ieee" if queries.dtype == torch.float32 else "tf32",
        BLOCK=block_size,
        BLOCK_D=max(16, next_power_of_2(head_dim)),  # tl.dot needs every dim >= 16
        **launch_options(block_size, queries.dtype == torch.float32),
    )
    return out
