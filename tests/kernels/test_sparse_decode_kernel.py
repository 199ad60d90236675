"""The Triton sparse decode kernel against the torch reference (interpreter on CPU)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sah_core.kernels import sparse_decode_attention

HEAD_LAYOUTS = {  # name: (query heads, KV heads)
    "mha": (4, 4),
    "gqa4": (8, 2),
    "gqa8": (16, 2),
    "mqa": (4, 1),
}


def run_both(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    sinks: torch.Tensor | None,
    num_splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    got = sparse_decode_attention(
        queries,
        keys,
        values,
        indices,
        weights,
        0.3,
        sinks,
        backend="triton",
        num_splits=num_splits,
    )
    want = sparse_decode_attention(
        queries.cpu(),
        keys.cpu(),
        values.cpu(),
        indices.cpu(),
        weights.cpu(),
        0.3,
        None if sinks is None else sinks.cpu(),
        backend="reference",
    )
    return got.cpu(), want


@pytest.mark.parametrize("layout", sorted(HEAD_LAYOUTS))
@pytest.mark.parametrize("per_kv_lists", [False, True], ids=["per-q-head", "per-kv-head"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kernel_matches_reference(
    layout: str,
    per_kv_lists: bool,
    dtype: torch.dtype,
    triton_device: torch.device,
    make_qkv: Any,
    make_index_mask: Any,
    tol: Any,
) -> None:
    num_q_heads, num_kv_heads = HEAD_LAYOUTS[layout]
    seed = sorted(HEAD_LAYOUTS).index(layout) * 4 + 2 * per_kv_lists + (dtype == torch.float32)
    generator = torch.Generator().manual_seed(seed)
    queries, keys, values = make_qkv(2, num_q_heads, num_kv_heads, 1, 64, 16, dtype, generator)
    list_heads = num_kv_heads if per_kv_lists else num_q_heads
    indices, weights = make_index_mask(2, list_heads, 1, 64, 40, generator=generator)
    # Alternate sinks on and off across the grid instead of doubling it.
    sinks = torch.randn(num_q_heads, generator=generator) if seed % 2 else None
    tensors = [t.to(triton_device) for t in (queries, keys, values, indices, weights)]
    got, want = run_both(*tensors, None if sinks is None else sinks.to(triton_device))
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, **tol(dtype))


@pytest.mark.parametrize("num_splits", [1, 2, 5])
def test_split_k_merge_is_exact(
    num_splits: int, triton_device: torch.device, make_qkv: Any, make_index_mask: Any
) -> None:
    """Splitting the list must not change the result beyond fp32 rounding (LSE merge)."""
    generator = torch.Generator().manual_seed(11)
    queries, keys, values = make_qkv(1, 4, 2, 1, 96, 16, torch.float32, generator)
    indices, weights = make_index_mask(1, 4, 1, 96, 80, generator=generator, min_selected=1)
    sinks = torch.randn(4, generator=generator)
    tensors = [t.to(triton_device) for t in (queries, keys, values, indices, weights, sinks)]
    got, want = run_both(*tensors, num_splits=num_splits)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


def test_multi_query_rows_odd_head_dim_fp16_and_strided_cache(
    triton_device: torch.device, make_qkv: Any, make_index_mask: Any
) -> None:
    """Q > 1, D not a power of two, fp16, and keys/values viewed out of a longer cache."""
    generator = torch.Generator().manual_seed(5)
    queries, long_keys, long_values = make_qkv(2, 8, 2, 3, 80, 24, torch.float16, generator)
    keys, values = long_keys[:, :, :50], long_values[:, :, :50]  # non-contiguous views
    indices, weights = make_index_mask(2, 8, 3, 50, 20, generator=generator)
    queries, keys, values, indices, weights = (
        t.to(triton_device) for t in (queries, keys, values, indices, weights)
    )
    got, want = run_both(queries, keys, values, indices, weights, None)
    torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)


def test_empty_rows_and_unit_weights(triton_device: torch.device, make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(6)
    queries, keys, values = make_qkv(1, 4, 2, 1, 30, 16, torch.float32, generator)
    indices = torch.full((1, 4, 1, 20), -1, dtype=torch.int64)
    indices[0, 0, 0, :5] = torch.tensor([3, 29, 0, 17, 8])
    indices[0, 2, 0, 7:10] = torch.tensor([1, 2, 28])
    weights = (indices >= 0).float()
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0])
    tensors = [t.to(triton_device) for t in (queries, keys, values, indices, weights, sinks)]
    got, want = run_both(*tensors)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    assert torch.equal(got[0, 1], torch.zeros(1, 16))
    assert torch.equal(got[0, 3], torch.zeros(1, 16))


def test_out_of_range_indices(triton_device: torch.device, make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(7)
    queries, keys, values = make_qkv(1, 2, 1, 1, 10, 16, torch.float32, generator)
    indices = torch.tensor([[[[0, 4, 12]], [[1, 2, 3]]]]).to(triton_device)
    weights = torch.ones(1, 2, 1, 3).to(triton_device)
    queries, keys, values = (t.to(triton_device) for t in (queries, keys, values))
    with pytest.raises(ValueError, match="indices hold values"):
        sparse_decode_attention(
            queries, keys, values, indices, weights, 0.3, backend="triton", check_indices=True
        )
    # Unchecked, the kernel skips the out-of-range entry instead of reading past the cache.
    got = sparse_decode_attention(queries, keys, values, indices, weights, 0.3, backend="triton")
    in_range = torch.where(indices < 10, indices, -1)
    want = sparse_decode_attention(
        queries, keys, values, in_range, weights, 0.3, backend="reference"
    )
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("list_len", [0, 3])
def test_tiny_head_dim_and_short_lists(
    list_len: int, triton_device: torch.device, make_qkv: Any, make_index_mask: Any
) -> None:
    """D=8 (padded to the 16-wide dot tile) with per-KV-head lists, and empty lists."""
    generator = torch.Generator().manual_seed(12 + list_len)
    queries, keys, values = make_qkv(1, 4, 2, 1, 9, 8, torch.float32, generator)
    indices, weights = make_index_mask(1, 2, 1, 9, list_len, generator=generator)
    sinks = torch.randn(4, generator=generator)
    tensors = [t.to(triton_device) for t in (queries, keys, values, indices, weights, sinks)]
    got, want = run_both(*tensors)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    if list_len == 0:
        assert torch.equal(got, torch.zeros_like(got))
