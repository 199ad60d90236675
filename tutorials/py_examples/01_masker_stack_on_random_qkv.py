"""A masker stack on raw random queries/keys/values: density and output error vs dense.

No model involved: this is the lowest level of the library. A ``ResearchAttentionConfig`` is
an ordered list of masker configs; ``ResearchAttention`` builds the maskers, each adds keys to
the mask built by the ones before, and attention runs under the final mask.

Run: ``uv run python tutorials/py_examples/01_masker_stack_on_random_qkv.py``
"""

from __future__ import annotations

import math

import torch

from sparse_attention_hub import (
    LocalMaskerConfig,
    OracleTopKConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention ``[B, Hq, Q, D]`` (keys/values shared by query-head groups)."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def main() -> None:
    torch.manual_seed(0)
    batch, query_heads, kv_heads, key_len, head_dim = 1, 4, 2, 1024, 64
    # One decode step: a single query row attends every one of the 1024 cached keys.
    queries = torch.randn(batch, query_heads, 1, head_dim)
    keys = torch.randn(batch, kv_heads, key_len, head_dim)
    values = torch.randn(batch, kv_heads, key_len, head_dim)
    # Make a few keys "heavy hitters" so that top-k has something to find.
    keys[:, :, 500:510] += 2.0 * queries[:, ::2, :, :]

    stack = ResearchAttentionConfig(
        masker_configs=[
            SinkMaskerConfig(sink_size=16),  # the first 16 keys
            LocalMaskerConfig(window_size=32),  # the 32 most recent keys
            OracleTopKConfig(heavy_size=0.05),  # + the 5% best-scoring other keys
        ]
    )
    attention = ResearchAttention(stack)
    scaling = 1.0 / math.sqrt(head_dim)
    mask = attention.compute_mask(
        queries, keys, values, None, scaling, sparse_meta_data={}, layer_idx=0
    )
    # custom_attention has the transformers signature: output is [B, Q, Hq, D].
    output, _ = attention.custom_attention(
        None, queries, keys, values, None, scaling=scaling, layer_idx=0
    )
    reference = dense_attention(queries, keys, values).transpose(1, 2)
    error = float((output - reference).norm() / reference.norm())

    print(f"masker stack: {[type(c).__name__ for c in stack.masker_configs]}")
    print(f"mask representation: {mask.representation}, shape {mask.shape}")
    print(f"keys attended per row: {int(mask.row_counts()[0, 0, 0])} of {key_len}")
    print(f"density: {mask.get_density():.4f}")
    print(f"relative output error vs dense: {error:.4f}")
    # A budget that covers every key gives back dense attention exactly.
    full = ResearchAttention(ResearchAttentionConfig([OracleTopKConfig(heavy_size=1.0)]))
    same, _ = full.custom_attention(None, queries, keys, values, None, scaling=scaling)
    print(f"heavy_size=1.0 equals dense: {torch.allclose(same, reference, atol=1e-5)}")
    assert error < 0.5, "the sparse output should stay close to dense attention"


if __name__ == "__main__":
    main()
