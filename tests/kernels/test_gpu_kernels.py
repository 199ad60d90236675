"""Compiled Triton kernels against the references at realistic sizes (CUDA only)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sah_core.kernels import (
    EfficientQuestAttention,
    QuestEfficientConfig,
    block_sparse_prefill_attention,
    causal_block_mask,
    sparse_decode_attention,
)

pytestmark = pytest.mark.gpu


def random_selection(
    batch: int, heads: int, kv_len: int, list_len: int, device: torch.device, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct random keys per row (top of a random permutation), last 10% padded."""
    generator = torch.Generator(device=device).manual_seed(seed)
    scores = torch.rand(batch, heads, 1, kv_len, generator=generator, device=device)
    indices = scores.topk(list_len, dim=-1).indices
    pad = list_len // 10
    indices[..., -pad:] = -1
    weights = torch.rand(indices.shape, generator=generator, device=device) * 0.9 + 0.1
    return indices, weights.masked_fill(indices < 0, 0.0)


@pytest.mark.parametrize("per_kv_lists", [False, True], ids=["per-q-head", "per-kv-head"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_decode_kernel_real_size(
    per_kv_lists: bool, dtype: torch.dtype, cuda_device: torch.device
) -> None:
    torch.manual_seed(0)
    batch, num_q_heads, num_kv_heads, kv_len, head_dim = 2, 32, 8, 32768, 128
    queries = torch.randn(batch, num_q_heads, 1, head_dim, device=cuda_device, dtype=dtype)
    keys = torch.randn(batch, num_kv_heads, kv_len, head_dim, device=cuda_device, dtype=dtype)
    values = torch.randn_like(keys)
    heads = num_kv_heads if per_kv_lists else num_q_heads
    indices, weights = random_selection(batch, heads, kv_len, 2048, cuda_device, 1)
    sinks = torch.randn(num_q_heads, device=cuda_device)
    scaling = head_dim**-0.5
    got = sparse_decode_attention(
        queries, keys, values, indices, weights, scaling, sinks, backend="triton"
    )
    want = sparse_decode_attention(
        queries, keys, values, indices, weights, scaling, sinks, backend="reference"
    )
    tolerance = 2e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)


def test_block_sparse_prefill_real_size(cuda_device: torch.device) -> None:
    torch.manual_seed(0)
    batch, num_q_heads, num_kv_heads, length, head_dim, block = 1, 8, 2, 2048, 128, 64
    shape_q = (batch, num_q_heads, length, head_dim)
    shape_kv = (batch, num_kv_heads, length, head_dim)
    queries = torch.randn(shape_q, device=cuda_device, dtype=torch.bfloat16)
    keys = torch.randn(shape_kv, device=cuda_device, dtype=torch.bfloat16)
    values = torch.randn_like(keys)
    tiles = length // block
    block_mask = torch.rand(1, num_q_heads, tiles, tiles, device=cuda_device) < 0.2
    block_mask |= torch.eye(tiles, dtype=torch.bool, device=cuda_device)
    got = block_sparse_prefill_attention(
        queries, keys, values, block_mask, head_dim**-0.5, block, backend="triton"
    )
    want = block_sparse_prefill_attention(
        queries, keys, values, block_mask, head_dim**-0.5, block, backend="reference"
    )
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
    full = causal_block_mask(length, length, block, cuda_device)
    dense = block_sparse_prefill_attention(
        queries, keys, values, full, head_dim**-0.5, block, backend="triton"
    )
    sdpa = F.scaled_dot_product_attention(
        queries, keys, values, is_causal=True, scale=head_dim**-0.5, enable_gqa=True
    )
    torch.testing.assert_close(dense, sdpa, atol=2e-2, rtol=2e-2)


def test_efficient_quest_real_size(cuda_device: torch.device) -> None:
    torch.manual_seed(0)
    queries = torch.randn(1, 32, 1, 128, device=cuda_device, dtype=torch.bfloat16)
    keys = torch.randn(1, 8, 16384, 128, device=cuda_device, dtype=torch.bfloat16)
    values = torch.randn_like(keys)
    config = QuestEfficientConfig(token_budget=1024, group_reduction="max")
    state: dict[str, Any] = {}
    got = EfficientQuestAttention(config, backend="triton").attend(
        queries, keys, values, 128**-0.5, state=state
    )
    want = EfficientQuestAttention(config, backend="reference").attend(
        queries, keys, values, 128**-0.5
    )
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)
