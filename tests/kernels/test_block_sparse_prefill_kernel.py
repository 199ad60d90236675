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


def _naive_layout_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    tiles: torch.Tensor,
    columns: torch.Tensor,
    scaling: float,
    block: int,
) -> torch.Tensor:
    """Plain loops: row r attends key j iff j <= its position and (tile or column) holds j."""
    b, hq, q_len, _ = queries.shape
    hkv, kv_len = keys.shape[1], keys.shape[2]
    out = torch.zeros(b, hq, q_len, values.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            th = h * tiles.shape[1] // hq
            ch = h * columns.shape[1] // hq
            for r in range(q_len):
                position, qb = kv_len - q_len + r, r // block
                keep = [
                    j
                    for j in range(position + 1)
                    if bool(tiles[bi % tiles.shape[0], th, qb, j // block])
                    or bool(columns[bi % columns.shape[0], ch, qb, j])
                ]
                if not keep:
                    continue
                kv = h // (hq // hkv)
                logits = torch.stack(
                    [queries[bi, h, r].double() @ keys[bi, kv, j].double() * scaling for j in keep]
                )
                weights = torch.softmax(logits, 0)
                out[bi, h, r] = weights @ values[bi, kv, keep].double()
    return out


@pytest.mark.parametrize(("q_len", "kv_len", "tile_heads"), [(40, 40, 4), (20, 45, 2)])
def test_columns_path_matches_naive_loops(
    q_len: int, kv_len: int, tile_heads: int, triton_device: torch.device, make_qkv: Any
) -> None:
    """Tiles plus single key columns (a vertical-slash layout): Triton and the tiled reference
    against plain loops; a column inside an active tile counts once."""
    generator = torch.Generator().manual_seed(q_len * kv_len)
    queries, keys, values = make_qkv(2, 4, 2, q_len, kv_len, 16, torch.float32, generator)
    n_q, n_k = -(-q_len // BLOCK), -(-kv_len // BLOCK)
    tiles = torch.rand(1, tile_heads, n_q, n_k, generator=generator) < 0.3
    columns = torch.rand(2, 4, n_q, kv_len, generator=generator) < 0.2
    want = _naive_layout_attention(queries, keys, values, tiles, columns, 0.3, BLOCK)
    ref = block_sparse_prefill_attention(
        queries, keys, values, tiles, 0.3, BLOCK, backend="reference", columns=columns
    )
    torch.testing.assert_close(ref.double(), want, atol=1e-5, rtol=1e-5)
    moved = [t.to(triton_device) for t in (queries, keys, values, tiles, columns)]
    got = block_sparse_prefill_attention(*moved[:4], 0.3, BLOCK, backend="triton", columns=moved[4])
    torch.testing.assert_close(got.cpu().double(), want, atol=1e-5, rtol=1e-5)


def test_reference_adds_the_attention_mask_bias(make_qkv: Any) -> None:
    """The reference's ``attention_mask`` (padding + causal, additive) equals the same
    forbidden keys given through the layout."""
    generator = torch.Generator().manual_seed(3)
    queries, keys, values = make_qkv(1, 2, 2, 32, 32, 16, torch.float32, generator)
    full = causal_block_mask(32, 32, BLOCK)
    bias = torch.zeros(1, 1, 32, 32)
    bias[..., :5] = torch.finfo(torch.float32).min  # left padding
    got = block_sparse_prefill_attention(
        queries, keys, values, full, 0.3, BLOCK, backend="reference"
    )
    from sah_core.kernels.reference import block_sparse_prefill_attention_reference

    padded = block_sparse_prefill_attention_reference(
        queries, keys, values, full, 0.3, BLOCK, attention_mask=bias
    )
    visible = torch.ones(32, 32, dtype=torch.bool).tril()
    visible[:, :5] = False
    want = F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=visible, scale=0.3, enable_gqa=True
    )
    torch.testing.assert_close(padded[..., 5:, :], want[..., 5:, :], atol=2e-5, rtol=2e-5)
    assert not torch.allclose(got, padded)
