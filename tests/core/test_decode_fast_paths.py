"""Decode fast paths (one query row, sink + local spans, no attention mask, no padding) give
the same masks as the general paths they shortcut, and the top-k one the naive selection."""

from __future__ import annotations

import pytest
import torch

import sah_core.maskers.quest as quest_module
from sah_core import ResearchAttention, ResearchAttentionConfig
from sah_core.maskers import (
    AdaptiveSamplingMaskerConfig,
    LocalMaskerConfig,
    OracleTopKConfig,
    QuestTopKMaskerConfig,
    SinkMaskerConfig,
)
from sah_core.maskers.adaptive_sampling import AdaptiveSamplingMasker
from sah_core.maskers.topk_base import TopKMasker, free_range


def decode_inputs(k: int, seed: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 6, 1, 16, generator=gen).to(dtype)
    keys = torch.randn(1, 2, k, 16, generator=gen).to(dtype)
    values = torch.randn(1, 2, k, 16, generator=gen).to(dtype)
    return q, keys, values


def spy(monkeypatch, owner, name: str) -> list[bool]:
    """Record, per call of ``owner.name``, whether it returned a result (not None)."""
    original, taken = getattr(owner, name), []

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(owner, name, wrapped)
    return taken


def stack_mask(configs, q, k, v, meta=None):
    attention = ResearchAttention(ResearchAttentionConfig(configs))
    call = attention.plan(q, k, v, None, 0.25, 0.0, {} if meta is None else meta, 0)
    return attention.mask_for(call).get_dense_mask()


def test_free_range() -> None:
    assert free_range([], 10) == (0, 10)
    assert free_range([(0, 3), (7, 10)], 10) == (3, 7)
    assert free_range([(7, 10), (0, 3)], 10) == (3, 7)
    assert free_range([(0, 3)], 10) == (3, 10)
    assert free_range([(0, 6), (4, 10)], 10)[1] <= free_range([(0, 6), (4, 10)], 10)[0]
    assert free_range([(0, 2), (4, 6)], 10) is None  # a span splits the free keys


def test_top_k_fast_path_is_the_naive_top_k() -> None:
    """float64 inputs: the exact top-k of the keys outside the sink and the window."""
    k, sink, window, heavy = 300, 8, 16, 20
    q, keys, values = decode_inputs(k, 0, torch.float64)
    configs = [SinkMaskerConfig(sink), LocalMaskerConfig(window), OracleTopKConfig(heavy)]
    got = stack_mask(configs, q, keys, values) > 0
    for h in range(q.shape[1]):
        scores = keys[0, h // 3] @ q[0, h, 0]
        middle = scores[sink : k - window]
        best = set((middle.topk(heavy).indices + sink).tolist())
        expected = best | set(range(sink)) | set(range(k - window, k))
        assert set(got[0, h, 0].nonzero().flatten().tolist()) == expected


@pytest.mark.parametrize("heavy", [20, 0.1, 390])  # 390 > the 376 free keys: padded
def test_top_k_fast_path_equals_general_path(monkeypatch, heavy) -> None:
    q, keys, values = decode_inputs(400, 1)
    configs = [SinkMaskerConfig(8), LocalMaskerConfig(16), OracleTopKConfig(heavy)]
    taken = spy(monkeypatch, TopKMasker, "_top_outside_spans")
    fast = stack_mask(configs, q, keys, values)
    assert taken == [True]
    monkeypatch.setattr(TopKMasker, "_top_outside_spans", lambda *args: None)
    assert torch.equal(fast, stack_mask(configs, q, keys, values))


@pytest.mark.parametrize(("page_size", "bits"), [(16, 32), (8, 8)])
def test_quest_fast_path_equals_general_path_over_decode(monkeypatch, page_size, bits) -> None:
    """A decode run (keys appended one by one, page bounds updated in place) gives the masks
    of the general path with fresh bounds at every step."""
    configs = [
        SinkMaskerConfig(8),
        LocalMaskerConfig(16),
        QuestTopKMaskerConfig(heavy_size=0.1, page_size=page_size, label_bits=bits),
    ]
    q_all, keys, values = decode_inputs(260, 2)
    meta: dict = {}
    taken = spy(monkeypatch, quest_module.QuestTopKMasker, "_pages_in_range")
    fast = []
    for step in range(12):
        k = 248 + step
        fast.append(stack_mask(configs, q_all, keys[:, :, :k], values[:, :, :k], meta))
    assert taken == [True] * 12
    monkeypatch.setattr(quest_module, "free_range", lambda *args: None)
    for step in range(12):
        k = 248 + step
        assert torch.equal(fast[step], stack_mask(configs, q_all, keys[:, :, :k], values[:, :, :k]))


@pytest.mark.parametrize(
    "sampler",
    [
        AdaptiveSamplingMaskerConfig(0.05, 0.25, 0.25, 8, 16),
        AdaptiveSamplingMaskerConfig(10, 0.1, 0.1, 4, 4),
        AdaptiveSamplingMaskerConfig(0.2, 0.3, 0.2, 0.02, 0.05),
    ],
)
def test_adaptive_sampling_fast_path_draws_the_general_paths_keys(monkeypatch, sampler) -> None:
    """Same seed, same kept keys and weights: the fast path slices the general path's draws."""
    configs = [SinkMaskerConfig(8), LocalMaskerConfig(16), sampler]
    q, keys, values = decode_inputs(500, 3)
    taken = spy(monkeypatch, AdaptiveSamplingMasker, "sample_range")
    torch.manual_seed(7)
    fast = stack_mask(configs, q, keys, values)
    assert taken == [True]
    monkeypatch.setattr(AdaptiveSamplingMasker, "sample_range", lambda *args: None)
    torch.manual_seed(7)
    general = stack_mask(configs, q, keys, values)
    assert bool((fast > 0).any() & (fast < 1).any())  # it really sampled
    assert torch.equal(fast, general)
