"""The torch references against independent naive loops and dense SDPA."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sah_core.kernels import (
    block_sparse_prefill_attention_reference,
    causal_block_mask,
    sparse_decode_attention_reference,
)


def naive_decode(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    scaling: float,
    sinks: torch.Tensor | None,
) -> torch.Tensor:
    """One query row at a time, in float64, straight from the definition."""
    batch, num_q_heads, q_len, head_dim = queries.shape
    group = num_q_heads // keys.shape[1]
    index_heads = indices.shape[1]
    out = torch.zeros(batch, num_q_heads, q_len, head_dim, dtype=torch.float64)
    for b in range(batch):
        for h in range(num_q_heads):
            kv_head = h // group
            list_head = h if index_heads == num_q_heads else kv_head
            for q in range(q_len):
                terms = []
                for slot in range(indices.shape[-1]):
                    key = int(indices[b, list_head, q, slot])
                    p = float(weights[b, list_head, q, slot])
                    if key < 0 or p <= 0:
                        continue
                    score = float(queries[b, h, q].double() @ keys[b, kv_head, key].double())
                    terms.append((score * scaling - math.log(p), values[b, kv_head, key].double()))
                logits = [t[0] for t in terms]
                if sinks is not None:
                    logits.append(float(sinks[h]))
                if not terms:
                    continue
                top = max(logits)
                denominator = sum(math.exp(x - top) for x in logits)
                for logit, value in terms:
                    out[b, h, q] += math.exp(logit - top) / denominator * value
    return out


@pytest.mark.parametrize(
    ("num_q_heads", "num_kv_heads", "per_kv_lists", "with_sinks"),
    [(2, 2, False, False), (4, 1, False, True), (8, 2, True, False), (4, 2, True, True)],
)
def test_decode_reference_matches_naive_loop(
    num_q_heads: int,
    num_kv_heads: int,
    per_kv_lists: bool,
    with_sinks: bool,
    make_qkv: Any,
    make_index_mask: Any,
) -> None:
    generator = torch.Generator().manual_seed(num_q_heads * 10 + num_kv_heads)
    queries, keys, values = make_qkv(
        2, num_q_heads, num_kv_heads, 2, 23, 8, torch.float32, generator
    )
    list_heads = num_kv_heads if per_kv_lists else num_q_heads
    indices, weights = make_index_mask(2, list_heads, 2, 23, 9, generator=generator)
    sinks = torch.randn(num_q_heads, generator=generator) if with_sinks else None
    got = sparse_decode_attention_reference(queries, keys, values, indices, weights, 0.4, sinks)
    want = naive_decode(queries, keys, values, indices, weights, 0.4, sinks)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_decode_reference_all_keys_unit_weights_is_dense_attention(make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(3)
    queries, keys, values = make_qkv(1, 8, 2, 1, 17, 16, torch.float32, generator)
    # Every key, shuffled: order must not matter.
    indices = torch.stack([torch.randperm(17, generator=generator) for _ in range(8)])
    indices = indices.view(1, 8, 1, 17)
    weights = torch.ones(1, 8, 1, 17)
    got = sparse_decode_attention_reference(queries, keys, values, indices, weights, 0.25)
    want = F.scaled_dot_product_attention(queries, keys, values, scale=0.25, enable_gqa=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_decode_reference_empty_row_gives_zeros(make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(4)
    queries, keys, values = make_qkv(1, 2, 1, 1, 5, 4, torch.float32, generator)
    indices = torch.tensor([[[[0, 3]], [[-1, -1]]]])
    weights = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.0]]]])
    out = sparse_decode_attention_reference(
        queries, keys, values, indices, weights, 1.0, sinks=torch.tensor([0.0, 2.0])
    )
    assert torch.equal(out[0, 1], torch.zeros(1, 4))
    assert out[0, 0].abs().sum() > 0


def naive_block_sparse(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    block_mask: torch.Tensor,
    scaling: float,
    block_size: int,
    causal: bool,
    sinks: torch.Tensor | None,
) -> torch.Tensor:
    """Per (batch, head, query) loop over every key, keeping those in active tiles."""
    batch, num_q_heads, q_len, head_dim = queries.shape
    num_kv_heads, kv_len = keys.shape[1], keys.shape[2]
    out = torch.zeros(batch, num_q_heads, q_len, head_dim, dtype=torch.float64)
    for b in range(batch):
        for h in range(num_q_heads):
            kv_head = h // (num_q_heads // num_kv_heads)
            mask_b = b if block_mask.shape[0] > 1 else 0
            mask_h = h * block_mask.shape[1] // num_q_heads
            for q in range(q_len):
                keep = [
                    k
                    for k in range(kv_len)
                    if block_mask[mask_b, mask_h, q // block_size, k // block_size]
                    and (not causal or k <= kv_len - q_len + q)
                ]
                logits = [
                    float(queries[b, h, q].double() @ keys[b, kv_head, k].double()) * scaling
                    for k in keep
                ]
                all_logits = logits + ([float(sinks[h])] if sinks is not None else [])
                if not keep:
                    continue
                top = max(all_logits)
                denominator = sum(math.exp(x - top) for x in all_logits)
                for k, logit in zip(keep, logits, strict=True):
                    out[b, h, q] += math.exp(logit - top) / denominator * values[b, kv_head, k]
    return out


@pytest.mark.parametrize(
    ("mask_heads", "causal", "with_sinks"), [(1, True, False), (4, True, True), (2, False, False)]
)
def test_block_sparse_reference_matches_naive_loop(
    mask_heads: int, causal: bool, with_sinks: bool, make_qkv: Any
) -> None:
    generator = torch.Generator().manual_seed(mask_heads)
    queries, keys, values = make_qkv(2, 4, 2, 10, 14, 8, torch.float32, generator)
    block_mask = torch.rand(2, mask_heads, 3, 4, generator=generator) < 0.6
    sinks = torch.randn(4, generator=generator) if with_sinks else None
    got = block_sparse_prefill_attention_reference(
        queries, keys, values, block_mask, 0.3, block_size=4, causal=causal, sinks=sinks
    )
    want = naive_block_sparse(queries, keys, values, block_mask, 0.3, 4, causal, sinks)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("q_len", "kv_len"), [(12, 12), (5, 13)])
def test_block_sparse_reference_all_causal_blocks_is_dense_causal_sdpa(
    q_len: int, kv_len: int, make_qkv: Any
) -> None:
    generator = torch.Generator().manual_seed(q_len)
    queries, keys, values = make_qkv(1, 4, 1, q_len, kv_len, 8, torch.float32, generator)
    mask = causal_block_mask(q_len, kv_len, 4)
    got = block_sparse_prefill_attention_reference(queries, keys, values, mask, 0.35, 4)
    visible = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
    want = F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=visible, scale=0.35, enable_gqa=True
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_validation_errors_name_the_field(make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(0)
    queries, keys, values = make_qkv(1, 3, 2, 1, 8, 4, torch.float32, generator)
    indices = torch.zeros(1, 3, 1, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="multiple of the number of KV heads"):
        sparse_decode_attention_reference(queries, keys, values, indices, indices.float(), 1.0)
    queries, keys, values = make_qkv(1, 4, 2, 1, 8, 4, torch.float32, generator)
    with pytest.raises(ValueError, match="indices has 3 heads"):
        sparse_decode_attention_reference(queries, keys, values, indices, indices.float(), 1.0)
    good = torch.zeros(1, 4, 1, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"indices hold values in \[8, 8\]"):
        sparse_decode_attention_reference(
            queries, keys, values, good + 8, torch.ones(1, 4, 1, 2), 1.0
        )
    with pytest.raises(ValueError, match="weights shape"):
        sparse_decode_attention_reference(queries, keys, values, good, torch.ones(1, 4, 1), 1.0)
    with pytest.raises(ValueError, match="sinks shape"):
        sparse_decode_attention_reference(
            queries, keys, values, good, torch.ones(1, 4, 1, 2), 1.0, torch.zeros(2)
        )
    with pytest.raises(ValueError, match="scaling"):
        sparse_decode_attention_reference(queries, keys, values, good, torch.ones(1, 4, 1, 2), 0)
    with pytest.raises(ValueError, match="block_mask tiles"):
        block_sparse_prefill_attention_reference(
            queries, keys, values, torch.ones(1, 1, 1, 1, dtype=torch.bool), 1.0, block_size=4
        )
