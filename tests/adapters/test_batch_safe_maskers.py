"""Every registered masker, batched with unequal question lengths, answers exactly as one
question at a time, on tiny random Llama and Qwen3 models through ``ModelAdapterHF``.

A batch of three questions is laid out ``[context | pads | question | new tokens]``; the
pads are masked as keys, and every stateful masker must keep them out of its state (page
bounds, centroids, centres, channel statistics) and count positions in each row's own
sequence. Each masker runs behind a small sink and local window (as in practice; the window
of the first question tokens reaches over the pads into the context), with a budget far
below the key count so the selection is a real subset.

Sampling maskers draw from the global RNG, whose stream a batch consumes differently from
single rows, so RandomSampling and vAttention run here at keep-probability 1 (they still
build their populations over the padded batch); their probabilities' batch-safety is what
this can check. MagicPIG's draw is its hash collision, so it runs for real.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_testkit import CONTEXT, QUESTIONS, tiny_config, tiny_model

from sah_adapters import ModelAdapterHF
from sah_core import ResearchAttentionConfig
from sah_core.maskers import (
    AdaptiveSamplingMaskerConfig,
    BlockSparseTopKMaskerConfig,
    CausalMaskerConfig,
    DoubleSparsityTopKMaskerConfig,
    HashAttentionTopKMaskerConfig,
    LocalMaskerConfig,
    MagicPigConfig,
    OracleTopKConfig,
    OracleTopPMaskerConfig,
    PQCacheConfig,
    QuestTopKMaskerConfig,
    RandomSamplingMaskerConfig,
    SinkMaskerConfig,
    SocketMaskerConfig,
    TidalDecodeMaskerConfig,
    VerticalSlashMaskerConfig,
)
from sah_protocol import Request

NEW_TOKENS = 4
FAMILIES = ["llama", "qwen3"]


def hash_weights(family: str) -> dict[int, dict[str, list[torch.Tensor]]]:
    """Random one-layer HashAttention MLPs (16 bits) for both decoder layers."""
    config = tiny_config(family)
    d = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    gen = torch.Generator().manual_seed(7)
    heads = {"query": config.num_attention_heads, "key": config.num_key_value_heads}
    return {
        layer: {
            f"{side}_{part}": [
                torch.randn(h, d, 16, generator=gen)
                if part == "matrix"
                else 0.1 * torch.randn(h, 16, generator=gen)
            ]
            for side, h in heads.items()
            for part in ("matrix", "bias")
        }
        for layer in range(config.num_hidden_layers)
    }


def masker(name: str, family: str) -> Any:
    """The masker under test, sized to select a real subset of the ~150-200 keys."""
    return {
        "sink": SinkMaskerConfig(sink_size=6),
        "local": LocalMaskerConfig(window_size=6),
        "causal": CausalMaskerConfig(),
        "oracle_top_k": OracleTopKConfig(heavy_size=8),
        "oracle_top_p": OracleTopPMaskerConfig(top_p=0.6),
        "hash_attention": HashAttentionTopKMaskerConfig(
            heavy_size=8,
            hat_bits=16,
            hat_mlp_layers=1,
            hat_mlp_hidden_size=16,
            hat_weights=hash_weights(family),
        ),
        "double_sparsity": DoubleSparsityTopKMaskerConfig(heavy_size=8, group_factor=4),
        "quest": QuestTopKMaskerConfig(heavy_size=0.08, page_size=4),
        "socket": SocketMaskerConfig(heavy_size=8, K=4, L=6),
        "pq_cache": PQCacheConfig(heavy_size=8, pq_group_factor=2, pq_bits=3, kmeans_iter=3),
        "random_sampling": RandomSamplingMaskerConfig(sampling_rate=1.0),
        "adaptive_sampling": AdaptiveSamplingMaskerConfig(0.1, epsilon=0.001, delta=0.001),
        "magic_pig": MagicPigConfig(lsh_l=8, lsh_k=3),
        # layer 0 selects, layer 1 reuses its pick
        "tidal_decode": TidalDecodeMaskerConfig(
            heavy_size=8, sparse_layer_start=0, reselection_layers=()
        ),
        "vertical_slash": VerticalSlashMaskerConfig(vertical_size=8, slash_size=8, last_q=4),
        "block_sparse_topk": BlockSparseTopKMaskerConfig(block_size=16, threshold=0.5),
    }[name]


MASKERS = [
    "sink",
    "local",
    "causal",
    "oracle_top_k",
    "oracle_top_p",
    "hash_attention",
    "double_sparsity",
    "quest",
    "socket",
    "pq_cache",
    "random_sampling",
    "adaptive_sampling",
    "magic_pig",
    "tidal_decode",
    "vertical_slash",
    "block_sparse_topk",
]


def answer_ids(adapter: ModelAdapterHF, batch_size: int) -> list[list[int]]:
    adapter.process_request(
        Request(CONTEXT, QUESTIONS), {"max_new_tokens": NEW_TOKENS}, {"batch_size": batch_size}
    )
    assert adapter.last_request_stats is not None
    return adapter.last_request_stats.answer_token_ids


def test_every_registered_masker_is_covered() -> None:
    from importlib.metadata import entry_points

    from sah_core.eviction import EvictionConfig

    registered = {ep.load().config_type for ep in entry_points(group="sah.maskers")}
    # Evictions act on the cache, not the mask: test_eviction.py runs each batched vs alone.
    registered = {c for c in registered if not issubclass(c, EvictionConfig)}
    covered = {type(masker(name, "llama")) for name in MASKERS}
    assert registered <= covered, sorted(c.__name__ for c in registered - covered)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", MASKERS)
def test_batched_equals_one_by_one(family: str, name: str, chat_tokenizer: Any) -> None:
    lengths = {len(chat_tokenizer(q)["input_ids"]) for q in QUESTIONS}
    assert len(lengths) == len(QUESTIONS)  # unequal questions: the batch really pads
    base = [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)]
    config = ResearchAttentionConfig(masker_configs=[*base, masker(name, family)])
    with ModelAdapterHF.from_model(tiny_model(family), chat_tokenizer, config) as adapter:
        alone = answer_ids(adapter, batch_size=1)
        batched = answer_ids(adapter, batch_size=3)
    assert all(len(a) > 0 for a in alone)
    assert batched == alone
