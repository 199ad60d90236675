"""The six part-B maskers inside a ResearchAttention stack: JSON round trip, a prefill then
decode steps with one ``sparse_meta_data``, layers kept apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import naive_refs_b as refs
import pytest
import torch

from sah_core import (
    DoubleSparsityTopKMaskerConfig,
    HashAttentionTopKMaskerConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    MaskerConfig,
    PQCacheConfig,
    QuestTopKMaskerConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    SocketMaskerConfig,
)

HQ, HKV, D = 4, 2, 16


def hat_weights() -> dict[int, dict[str, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    return {
        layer: {
            "query_matrix": [torch.randn(HQ, D, 8, generator=gen)],
            "query_bias": [torch.zeros(HQ, 8)],
            "key_matrix": [torch.randn(HKV, D, 8, generator=gen)],
            "key_bias": [torch.zeros(HKV, 8)],
        }
        for layer in (0, 1)
    }


def part_b_configs(tmp_path: Path) -> dict[str, MaskerConfig]:
    channels = tmp_path / "channels.json"
    channels.write_text(
        json.dumps(
            {
                f"model.layers.{i}.self_attn.qk_proj": [
                    torch.randperm(D, generator=torch.Generator().manual_seed(i)).tolist()
                ]
                * HKV
                for i in (0, 1)
            }
        )
    )
    return {
        "hash_attention": HashAttentionTopKMaskerConfig(
            heavy_size=0.25, hat_bits=8, hat_mlp_layers=1, hat_weights=hat_weights()
        ),
        "double_sparsity": DoubleSparsityTopKMaskerConfig(
            heavy_size=0.25, sorted_channel_file=str(channels), group_factor=4
        ),
        "quest": QuestTopKMaskerConfig(heavy_size=0.25, page_size=2),
        "socket": SocketMaskerConfig(heavy_size=0.25, K=4, L=8, tau=0.5),
        "pq_cache": PQCacheConfig(heavy_size=0.25, pq_group_factor=4, pq_bits=3, init_offset=2),
        "magic_pig": MagicPigConfig(lsh_l=8, lsh_k=3, seed=1),
    }


@pytest.mark.parametrize(
    "name", ["hash_attention", "double_sparsity", "quest", "socket", "pq_cache", "magic_pig"]
)
def test_stack_prefill_then_decode(name: str, tmp_path: Path) -> None:
    config = ResearchAttentionConfig(
        [
            SinkMaskerConfig(sink_size=2),
            LocalMaskerConfig(window_size=2),
            part_b_configs(tmp_path)[name],
        ]
    )
    data = json.loads(json.dumps(config.to_dict(), default=str))
    again = ResearchAttentionConfig.from_dict(data)
    assert [type(c).__name__ for c in again.masker_configs] == [
        type(c).__name__ for c in config.masker_configs
    ]
    attention = ResearchAttention.create_from_config(again)
    prefill, steps = 24, 3
    queries, keys, values = refs.make_qkv(2, 1, HQ, HKV, prefill + steps, prefill + steps, D)
    meta: dict[Any, Any] = {}
    scaling = D**-0.5
    for layer in (0, 1):
        out, _ = attention.custom_attention(
            None,
            queries[:, :, :prefill],
            keys[:, :, :prefill],
            values[:, :, :prefill],
            refs.causal_mask(1, prefill, prefill),
            scaling,
            0.0,
            meta,
            layer_idx=layer,
        )
        assert out.shape == (1, prefill, HQ, D) and bool(torch.isfinite(out).all())
    assert set(meta) == {0, 1}  # state is kept per layer
    for step in range(steps):
        k = prefill + step + 1
        for layer in (0, 1):
            mask = attention.compute_mask(
                queries[:, :, k - 1 : k],
                keys[:, :, :k],
                values[:, :, :k],
                None,
                scaling,
                meta,
                layer,
            )
            density = mask.get_density()
            assert 0.0 < density < 1.0
            out, _ = attention.custom_attention(
                None,
                queries[:, :, k - 1 : k],
                keys[:, :, :k],
                values[:, :, :k],
                None,
                scaling,
                0.0,
                meta,
                layer_idx=layer,
            )
            assert bool(torch.isfinite(out).all())


def test_two_maskers_of_one_type_keep_separate_state() -> None:
    # two Quest maskers with different page sizes in one stack share a layer's state dict;
    # their cached page summaries must not mix
    config = ResearchAttentionConfig(
        [
            QuestTopKMaskerConfig(heavy_size=3, page_size=4),
            QuestTopKMaskerConfig(heavy_size=3, page_size=3, label_bits=8),
        ]
    )
    attention = ResearchAttention.create_from_config(config)
    prefill, steps = 14, 4
    queries, keys, values = refs.make_qkv(4, 1, HQ, HKV, prefill + steps, prefill + steps, D)
    meta: dict[Any, Any] = {}
    attention.compute_mask(
        queries[:, :, :prefill],
        keys[:, :, :prefill],
        values[:, :, :prefill],
        refs.causal_mask(1, prefill, prefill),
        1.0,
        meta,
        0,
    )
    for step in range(steps):
        k = prefill + step + 1
        args = (queries[:, :, k - 1 : k], keys[:, :, :k], values[:, :, :k], None, 1.0)
        reused = attention.compute_mask(*args, meta, 0)
        fresh = ResearchAttention.create_from_config(config).compute_mask(*args, {}, 0)
        assert torch.equal(reused.get_dense_mask(), fresh.get_dense_mask())


@pytest.mark.parametrize(
    "name", ["hash_attention", "double_sparsity", "quest", "socket", "pq_cache", "magic_pig"]
)
def test_half_precision_inputs(name: str, tmp_path: Path) -> None:
    config = part_b_configs(tmp_path)[name]
    masker = ResearchAttention.create_from_config(ResearchAttentionConfig([config])).maskers[0]
    queries, keys, values = (t.bfloat16() for t in refs.make_qkv(3, 1, HQ, HKV, 2, 32, D))
    meta: dict[Any, Any] = {}
    for _ in range(2):  # second call goes through the cached state
        mask = refs.call_masker(masker, queries, keys, values, None, meta)
        dense = mask.get_dense_mask()
        assert float(dense.min()) >= 0.0 and float(dense.max()) <= 1.0
        if not masker.is_sampling:  # budget 0.25 * 32 keys, all available (PQ: 30 past sinks)
            assert bool((mask.row_counts() == 8).all())
