"""Triton sparse decode attention over an index-form mask (split-K flash-decoding).

Each program handles one (batch, index-list head, query row) and one contiguous chunk
("split") of that row's index list: it gathers only the selected key/value rows, adds
``-log p`` to each logit (importance weight ``1/p``) and keeps an online softmax in fp32
(running max, running denominator, unnormalised output), as in FlashAttention (Dao et al.,
2022). A second kernel merges the splits with a log-sum-exp reduction and the optional
attention-sink logit, as in Flash-Decoding (Dao, Haziza, Massa and Sizov, 2023): splitting
the index list lets a single decode token fill the whole GPU.

GQA: when the index lists are per KV head (``indices.shape[1] == Hkv``), one program serves
the whole query-head group, so every gathered KV row is loaded once for the group and scored
with a small matrix product; with per-query-head lists each head gathers its own rows.

This module imports Triton at import time; :mod:`sah_core.kernels.dispatch` imports it lazily.
"""
# mypy: disable-error-code="no-untyped-def,no-untyped-call,misc,untyped-decorator"

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import triton
import triton.language as tl

from sah_core.kernels._triton_support import interpreting, next_power_of_2

LOG2_E = math.log2(math.e)
# Chunk granularity of a split: every BLOCK_N an autotune config may pick divides it.
_GPU_CHUNK_GRANULE = 128
_INTERPRETER_BLOCK_N = 16
_MAX_SPLITS = 64


@triton.jit
def _sparse_decode_split_kernel(
    Q,
    K,
    V,
    IDX,
    W,
    PART_ACC,
    PART_M,
    PART_L,
    stride_qb,
    stride_qh,
    stride_qq,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    num_q_heads,
    num_index_heads,
    q_len,
    list_len,
    kv_len,
    head_dim,
    group_size,
    heads_per_program,
    chunk_len,
    num_splits,
    scale_log2,
    L_BUCKET,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    row = tl.program_id(0)
    split = tl.program_id(1)
    q_row = row % q_len
    index_head = (row // q_len) % num_index_heads
    batch = row // (q_len * num_index_heads)
    # Per-KV-head lists serve a whole query-head group; per-query-head lists serve one head.
    if heads_per_program == 1:
        kv_head = index_head // group_size
        first_q_head = index_head
    else:
        kv_head = index_head
        first_q_head = index_head * group_size

    head_offsets = tl.arange(0, BLOCK_H)
    head_in_range = head_offsets < heads_per_program
    dim_offsets = tl.arange(0, BLOCK_D)
    dim_in_range = dim_offsets < head_dim
    q_ptrs = (
        Q
        + batch * stride_qb
        + (first_q_head + head_offsets)[:, None] * stride_qh
        + q_row * stride_qq
        + dim_offsets[None, :]
    )
    q = tl.load(q_ptrs, mask=head_in_range[:, None] & dim_in_range[None, :], other=0.0)
    q = q.to(tl.float32)
    # One head per program: a plain vector, so the scores are a 2-D multiply-reduce.
    q_vector = tl.sum(q, axis=0)

    k_base = K + batch * stride_kb + kv_head * stride_kh
    v_base = V + batch * stride_vb + kv_head * stride_vh
    list_base = row.to(tl.int64) * list_len
    start = split * chunk_len
    end = tl.minimum(start + chunk_len, list_len)

    running_max = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    running_sum = tl.zeros((BLOCK_H,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_D), dtype=tl.float32)
    for block_start in range(start, end, BLOCK_N):
        slots = block_start + tl.arange(0, BLOCK_N)
        in_list = slots < end
        key_index = tl.load(IDX + list_base + slots, mask=in_list, other=-1).to(tl.int64)
        keep_prob = tl.load(W + list_base + slots, mask=in_list, other=0.0).to(tl.float32)
        # Out-of-range indices are skipped rather than read (the dispatcher can reject them).
        selected = (key_index >= 0) & (key_index < kv_len) & (keep_prob > 0.0)
        row_mask = selected[:, None] & dim_in_range[None, :]
        k = tl.load(
            k_base + key_index[:, None] * stride_kn + dim_offsets[None, :],
            mask=row_mask,
            other=0.0,
        )
        if USE_DOT:
            # Half inputs are exact in tf32, so q.k is exact; p is rounded to tf32 (10 bits,
            # finer than bf16) for the p.v product. fp32 inputs use full-precision "ieee".
            scores = tl.dot(q, tl.trans(k.to(tl.float32)), input_precision=DOT_PRECISION)
        else:
            scores = tl.sum(k.to(tl.float32) * q_vector[None, :], axis=1)[None, :]
        # log2 domain: exp2 is the fast path; -log2(p) is the 1/p importance weight.
        log_weight = tl.log2(tl.where(selected, keep_prob, 1.0))
        logits = scores * scale_log2 - log_weight[None, :]
        logits = tl.where(selected[None, :], logits, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(logits, axis=1))
        # Rows with nothing selected so far keep max -inf; shift by 0 to avoid inf - inf.
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        rescale = tl.exp2(running_max - shift)
        probs = tl.exp2(logits - shift[:, None])
        running_sum = running_sum * rescale + tl.sum(probs, axis=1)
        v = tl.load(
            v_base + key_index[:, None] * stride_vn + dim_offsets[None, :],
            mask=row_mask,
            other=0.0,
        )
        if USE_DOT:
            update = tl.dot(probs, v.to(tl.float32), input_precision=DOT_PRECISION)
        else:
            probs_vector = tl.sum(probs, axis=0)
            update = tl.sum(probs_vector[:, None] * v.to(tl.float32), axis=0)[None, :]
        acc = acc * rescale[:, None] + update
        running_max = new_max

    out_rows = (batch * num_q_heads + first_q_head + head_offsets) * q_len + q_row
    part_slot = out_rows.to(tl.int64) * num_splits + split
    tl.store(PART_M + part_slot, running_max, mask=head_in_range)
    tl.store(PART_L + part_slot, running_sum, mask=head_in_range)
    tl.store(
        PART_ACC + part_slot[:, None] * BLOCK_D + dim_offsets[None, :],
        acc,
        mask=head_in_range[:, None],
    )


@triton.jit
def _merge_splits_kernel(
    PART_ACC,
    PART_M,
    PART_L,
    SINKS,
    OUT,
    num_q_heads,
    q_len,
    head_dim,
    num_splits,
    HAS_SINKS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    split_offsets = tl.arange(0, BLOCK_S)
    split_in_range = split_offsets < num_splits
    dim_offsets = tl.arange(0, BLOCK_D)
    part_m = tl.load(
        PART_M + row * num_splits + split_offsets, mask=split_in_range, other=float("-inf")
    )
    part_l = tl.load(PART_L + row * num_splits + split_offsets, mask=split_in_range, other=0.0)
    total_max = tl.max(part_m, axis=0)
    if HAS_SINKS:
        head = (row // q_len) % num_q_heads
        sink_log2 = tl.load(SINKS + head).to(tl.float32) * 1.4426950408889634
        total_max = tl.maximum(total_max, sink_log2)
    shift = tl.where(total_max == float("-inf"), 0.0, total_max)
    split_scale = tl.exp2(part_m - shift)
    denominator = tl.sum(part_l * split_scale, axis=0)
    if HAS_SINKS:
        denominator += tl.exp2(sink_log2 - shift)
    part_acc = tl.load(
        PART_ACC + (row * num_splits + split_offsets)[:, None] * BLOCK_D + dim_offsets[None, :],
        mask=split_in_range[:, None],
        other=0.0,
    )
    numerator = tl.sum(part_acc * split_scale[:, None], axis=0)
    # A row that selected nothing has numerator 0 and outputs zeros.
    out = numerator / tl.where(denominator > 0.0, denominator, 1.0)
    tl.store(
        OUT + row * head_dim + dim_offsets,
        out.to(OUT.dtype.element_ty),
        mask=dim_offsets < head_dim,
    )


def _gpu_configs() -> list[Any]:
    return [
        triton.Config({"BLOCK_N": block_n}, num_warps=warps, num_stages=stages)
        for block_n, warps, stages in ((32, 4, 2), (64, 4, 2), (64, 8, 2), (128, 8, 2))
    ]


@functools.cache
def _split_kernel_launcher() -> Any:
    """The split kernel, autotuned on GPU; a fixed config under the interpreter."""
    if interpreting():
        return _sparse_decode_split_kernel
    return triton.autotune(
        configs=_gpu_configs(),
        key=["L_BUCKET", "heads_per_program", "BLOCK_H", "BLOCK_D", "USE_DOT", "DOT_PRECISION"],
    )(_sparse_decode_split_kernel)


@functools.cache
def _multiprocessor_count(device_index: int) -> int:
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)


def _choose_splits(rows: int, list_len: int, granule: int, device: torch.device) -> int:
    """Enough splits to give every SM a few programs, never more than the list has chunks."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        target_programs = 4 * _multiprocessor_count(index)
    else:
        target_programs = 4
    max_useful = max(1, -(-list_len // granule))
    wanted = max(1, -(-target_programs // max(rows, 1)))
    return min(wanted, max_useful, _MAX_SPLITS)


def sparse_decode_attention_triton(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    scaling: float,
    sinks: torch.Tensor | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Triton version of :func:`sah_core.kernels.reference.sparse_decode_attention_reference`.

    Inputs are assumed validated by the dispatcher. ``num_splits`` overrides the split-K
    heuristic (``None``: enough splits to fill the GPU).
    """
    batch, num_q_heads, q_len, head_dim = queries.shape
    num_kv_heads, kv_len = keys.shape[1], keys.shape[2]
    num_index_heads, list_len = indices.shape[1], indices.shape[3]
    group_size = num_q_heads // num_kv_heads
    shared = num_index_heads == num_kv_heads and group_size > 1
    heads_per_program = group_size if shared else 1
    block_h = max(16, next_power_of_2(group_size)) if shared else 1
    block_d = max(16, next_power_of_2(head_dim))  # tl.dot needs every dim >= 16

    # The kernel assumes unit stride on the last dim of q/k/v and contiguous index lists.
    queries, keys, values = (
        t if t.stride(-1) == 1 else t.contiguous() for t in (queries, keys, values)
    )
    indices = indices.contiguous()
    weights = weights.contiguous()

    granule = _INTERPRETER_BLOCK_N if interpreting() else _GPU_CHUNK_GRANULE
    rows = batch * num_index_heads * q_len
    if num_splits is None:
        num_splits = _choose_splits(rows, list_len, granule, queries.device)
    if not isinstance(num_splits, int) or num_splits < 1:
        raise ValueError(f"num_splits is {num_splits!r}; must be an int >= 1 or None")
    per_split = -(-list_len // num_splits)
    chunk_len = max(granule, -(-per_split // granule) * granule)
    num_splits = max(1, -(-list_len // chunk_len))

    out_rows = batch * num_q_heads * q_len
    device = queries.device
    part_acc = torch.empty((out_rows, num_splits, block_d), dtype=torch.float32, device=device)
    part_m = torch.empty((out_rows, num_splits), dtype=torch.float32, device=device)
    part_l = torch.empty((out_rows, num_splits), dtype=torch.float32, device=device)
    out = torch.empty((batch, num_q_heads, q_len, head_dim), dtype=queries.dtype, device=device)
    if out_rows == 0:
        return out

    meta: dict[str, Any] = {}
    if interpreting():
        meta["BLOCK_N"] = _INTERPRETER_BLOCK_N
    precision = "ieee" if queries.dtype == torch.float32 else "tf32"
    _split_kernel_launcher()[(rows, num_splits)](
        queries,
        keys,
        values,
        indices,
        weights,
        part_acc,
        part_m,
        part_l,
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
        num_index_heads,
        q_len,
        list_len,
        kv_len,
        head_dim,
        group_size,
        heads_per_program,
        chunk_len,
        num_splits,
        scaling * LOG2_E,
        next_power_of_2(list_len),
        BLOCK_H=block_h,
        BLOCK_D=block_d,
        USE_DOT=shared,
        DOT_PRECISION=precision,
        **meta,
    )
    sink_arg = sinks.contiguous() if sinks is not None else part_m
    _merge_splits_kernel[(out_rows,)](
        part_acc,
        part_m,
        part_l,
        sink_arg,
        out,
        num_q_heads,
        q_len,
        head_dim,
        num_splits,
        HAS_SINKS=sinks is not None,
        BLOCK_S=next_power_of_2(num_splits),
        BLOCK_D=block_d,
    )
    return out
