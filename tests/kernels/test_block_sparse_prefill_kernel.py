"""The Triton block-sparse prefill kernel against the reference and dense SDPA."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sah_core.kernels import (
    block_mask_from_active_blocks,
    block_sparse_prefill_attention,
    causal_block_mask,
    streaming_block_mask,
)

BLOCK = 16  # the smallest tile tl.dot accepts


@pytest.mark.parametrize(
    ("num_q_heads", "num_kv_heads", "mask_heads", "q_len", "kv_len", "causal", "dtype"),
    [
        (2, 2, 2, 40, 40, True, torch.float32),
        (4, 1, 1, 20, 50, True, torch.float32),
        (8, 2, 2, 33, 33, False, torch.float32),
        (4, 2, 4, 48, 48, True, torch.bfloat16),
        (2, 1, 1, 17, 17, True, torch.float16),
    ],
)
def test_kernel_matches_reference(
    num_q_heads: int,
    num_kv_heads: int,
    mask_heads: int,
    q_len: int,
    kv_len: int,
    causal: bool,
    dtype: torch.dtype,
    triton_device: torch.device,
    make_qkv: Any,
    tol: Any,
) -> None:
    generator = torch.Generator().manual_seed(q_len + num_q_heads)
    queries, keys, values = make_qkv(
        2, num_q_heads, num_kv_heads, q_len, kv_len, 16, dtype, generator
    )
    tiles = (-(-q_len // BLOCK), -(-kv_len // BLOCK))
    block_mask = torch.rand(2, mask_heads, *tiles, generator=generator) < 0.5
    sinks = torch.randn(num_q_heads, generator=generator) if num_kv_heads != 2 else None
    tensors = [t.to(triton_device) for t in (queries, keys, values, block_mask)]
    got = block_sparse_prefill_attention(
        *tensors,
        0.3,
        BLOCK,
        causal,
        None if sinks is None else sinks.to(triton_device),
        backend="triton",
    )
    want = block_sparse_prefill_attention(
        queries, keys, values, block_mask, 0.3, BLOCK, causal, sinks, backend="reference"
    )
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu(), want, **tol(dtype))


@pytest.mark.parametrize(("q_len", "kv_len"), [(48, 48), (20, 52)])
def test_all_causal_blocks_equals_dense_sdpa(
    q_len: int, kv_len: int, triton_device: torch.device, make_qkv: Any
) -> None:
    generator = torch.Generator().manual_seed(kv_len)
    queries, keys, values = make_qkv(1, 4, 2, q_len, kv_len, 32, torch.float32, generator)
    mask = causal_block_mask(q_len, kv_len, BLOCK)
    queries, keys, values, mask = (t.to(triton_device) for t in (queries, keys, values, mask))
    got = block_sparse_prefill_attention(
        queries, keys, values, mask, 0.2, BLOCK, causal=True, backend="triton"
    )
    visible = torch.ones(q_len, kv_len, dtype=torch.bool, device=triton_device).tril(kv_len - q_len)
    want = F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=visible, scale=0.2, enable_gqa=True
    )
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_streaming_layout_and_active_block_lists(
    triton_device: torch.device, make_qkv: Any
) -> None:
    """A sink + local layout given as active-block lists gives the same as its bool mask."""
    generator = torch.Generator().manual_seed(9)
    queries, keys, values = make_qkv(1, 2, 1, 64, 64, 16, torch.float32, generator)
    layout = streaming_block_mask(64, 64, BLOCK, sink_blocks=1, local_blocks=2)
    expected_layout = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(layout[0, 0], expected_layout)
    lists = torch.tensor([[[[0, -1, -1], [0, 1, -1], [0, 1, 2], [0, 2, 3]]]])
    assert torch.equal(block_mask_from_active_blocks(lists, 4), layout)
    queries, keys, values, layout = (t.to(triton_device) for t in (queries, keys, values, layout))
    got = block_sparse_prefill_attention(
        queries, keys, values, layout, 0.25, BLOCK, backend="triton"
    )
    want = block_sparse_prefill_attention(
        queries.cpu(), keys.cpu(), values.cpu(), layout.cpu(), 0.25, BLOCK, backend="reference"
    )
    torch.testing.assert_close(got.cpu(), want, atol=2e-5, rtol=2e-5)


def test_kernel_rejects_tile_sizes_it_cannot_run(
    triton_device: torch.device, make_qkv: Any
) -> None:
    generator = torch.Generator().manual_seed(1)
    queries, keys, values = make_qkv(1, 2, 2, 24, 24, 16, torch.float32, generator)
    mask = causal_block_mask(24, 24, 12)
    queries, keys, values, mask = (t.to(triton_device) for t in (queries, keys, values, mask))
    with pytest.raises(ValueError, match="power of two >= 16"):
        block_sparse_prefill_attention(queries, keys, values, mask, 0.2, 12, backend="triton")
