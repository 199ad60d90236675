"""Eviction scorers against naive per-head loops of each paper's definition, plus properties."""

from __future__ import annotations

import math

import pytest
import torch

from sah_core.eviction import (
    AdaKVConfig,
    H2OConfig,
    KNormConfig,
    PyramidKVConfig,
    SnapKVConfig,
    StreamingLLMConfig,
    TOVAConfig,
    pyramid_budget,
)
from sah_core.eviction.base import EvictionInputs
from sah_core.maskers import MaskerConfig

B, HQ, HKV, K, D = 1, 4, 2, 40, 8
SCALE = D**-0.5


@pytest.fixture(scope="module")
def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    q = torch.randn(B, HQ, K, D, generator=g)
    k = torch.randn(B, HKV, K, D, generator=g) * torch.rand(B, HKV, K, 1, generator=g) * 2
    v = torch.randn(B, HKV, K, D, generator=g)
    return q, k, v


def _inputs(t: tuple[torch.Tensor, ...], layer: int = 0, layers: int = 4) -> EvictionInputs:
    return EvictionInputs(t[0], t[1], t[2], SCALE, layer, layers, {})


def _kept(config: MaskerConfig, t: tuple[torch.Tensor, ...], budget: int, **kw: int) -> list:
    masker = config.masker_class(config)  # type: ignore[misc]
    plan = masker.keep(_inputs(t, **kw), budget)
    out = []
    for h in range(HKV):
        row = plan.indices[0, h].tolist()
        if plan.counts is not None:
            row = row[: int(plan.counts[0, h])]
        assert row == sorted(row)  # ascending: temporal order kept
        out.append(set(row))
    return out


def _probs(q: torch.Tensor, k: torch.Tensor, head: int, i: int) -> list[float]:
    """Softmax of query position i (query head ``head``) over keys 0..i, plain loops."""
    kv = head // (HQ // HKV)
    logits = [float(q[0, head, i] @ k[0, kv, j]) * SCALE for j in range(i + 1)]
    top = max(logits)
    ex = [math.exp(x - top) for x in logits]
    return [e / sum(ex) for e in ex] + [0.0] * (K - i - 1)


def _top(scores: list[float], n: int) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda j: -scores[j])[:n])


def _naive_snapkv(t: tuple[torch.Tensor, ...], w: int, kernel: int, pooling: str) -> list:
    q, k, _ = t
    per_kv: list[list[float]] = []
    group = HQ // HKV
    for kv in range(HKV):
        acc = [0.0] * (K - w)
        for head in range(kv * group, (kv + 1) * group):
            votes = [0.0] * (K - w)
            for i in range(K - w, K):
                p = _probs(q, k, head, i)
                for j in range(K - w):
                    votes[j] += p[j] / w
            pad = kernel // 2
            pooled = []
            for j in range(K - w):
                window = [votes[x] if 0 <= x < K - w else None for x in range(j - pad, j + pad + 1)]
                if pooling == "max":
                    pooled.append(max(x for x in window if x is not None))
                else:
                    pooled.append(sum(x or 0.0 for x in window) / kernel)
            for j in range(K - w):
                acc[j] += pooled[j] / group
        per_kv.append(acc)
    return per_kv


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_snapkv_matches_naive_votes(tensors: tuple, pooling: str) -> None:
    w, budget = 6, 14
    scores = _naive_snapkv(tensors, w, 5, pooling)
    expected = [_top(s, budget - w) | set(range(K - w, K)) for s in scores]
    config = SnapKVConfig(budget=budget, window_size=w, pooling=pooling)
    got = _kept(config, tensors, budget)
    for h in range(HKV):  # max pooling makes plateaus: compare the kept scores, not indices
        assert set(range(K - w, K)) <= got[h] and len(got[h]) == budget
        mine = sorted(scores[h][j] for j in got[h] if j < K - w)
        theirs = sorted(scores[h][j] for j in expected[h] if j < K - w)
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-7)


def test_knorm_keeps_lowest_key_norms(tensors: tuple) -> None:
    k = tensors[1]
    expected = []
    for h in range(HKV):
        norms = [math.sqrt(sum(float(x) ** 2 for x in k[0, h, j])) for j in range(K)]
        expected.append(_top([-n for n in norms], 10))
    assert _kept(KNormConfig(budget=10), tensors, 10) == expected


def test_streaming_llm_keeps_sinks_and_recent(tensors: tuple) -> None:
    got = _kept(StreamingLLMConfig(budget=12, sink_size=4), tensors, 12)
    assert got == [set(range(4)) | set(range(K - 8, K))] * HKV


def test_tova_last_query_mean_over_heads(tensors: tuple) -> None:
    q, k, _ = tensors
    mean = [sum(_probs(q, k, h, K - 1)[j] for h in range(HQ)) / HQ for j in range(K)]
    mean[K - 1] = math.inf  # the current token stays
    expected = _top(mean, 9)
    assert _kept(TOVAConfig(budget=9), tensors, 9) == [expected] * HKV


def test_h2o_cumulative_attention_plus_recent(tensors: tuple) -> None:
    q, k, _ = tensors
    budget, recent = 12, 6
    group = HQ // HKV
    expected = []
    for kv in range(HKV):
        acc = [0.0] * K
        for head in range(kv * group, (kv + 1) * group):
            for i in range(K):
                for j, p in enumerate(_probs(q, k, head, i)):
                    acc[j] += p
        heavy = _top(acc[: K - recent], budget - recent)
        expected.append(heavy | set(range(K - recent, K)))
    assert _kept(H2OConfig(budget=budget, recent_ratio=0.5), tensors, budget) == expected


def test_pyramid_budgets_shrink_with_depth_and_average_to_budget() -> None:
    layers, budget, w = 8, 200, 16
    budgets = [pyramid_budget(budget, 1000, w, 20, i, layers) for i in range(layers)]
    assert budgets == sorted(budgets, reverse=True) and budgets[0] > budgets[-1]
    assert abs(sum(budgets) / layers - budget) <= 1
    assert budgets[-1] == round((budget - w) / 20) + w  # the last layer keeps a/beta + window


def test_pyramidkv_is_snapkv_at_its_layer_budget(tensors: tuple) -> None:
    w, budget = 6, 14
    for layer in (0, 3):
        n = pyramid_budget(budget, K, w, 20, layer, 4)
        expected = [
            _top(s, n - w) | set(range(K - w, K)) for s in _naive_snapkv(tensors, w, 5, "avg")
        ]
        config = PyramidKVConfig(budget=budget, window_size=w)
        assert _kept(config, tensors, budget, layer=layer) == expected


def test_adakv_allocates_across_heads_with_safeguard(tensors: tuple) -> None:
    w, budget, alpha = 4, 12, 0.25
    scores = _naive_snapkv(tensors, w, 5, "avg")
    big = 1e30
    flat = []
    for h, s in enumerate(scores):
        full = s + [big] * w
        for j in _top(s + [-1.0] * w, int(budget * alpha)):
            full[j] = big
        flat += [(full[j], h, j) for j in range(K)]
    chosen = sorted(flat, key=lambda x: -x[0])[: HKV * budget]
    expected = [{j for _, hh, j in chosen if hh == h} for h in range(HKV)]
    config = AdaKVConfig(budget=budget, window_size=w, alpha_safeguard=alpha)
    got = _kept(config, tensors, budget)
    assert got == expected
    assert sum(len(s) for s in got) == HKV * budget
    assert all(len(s) >= int(budget * alpha) + w for s in got)


@pytest.mark.parametrize(
    "config",
    [
        SnapKVConfig(budget=1.0, window_size=4),
        PyramidKVConfig(budget=1.0, window_size=4),
        AdaKVConfig(budget=1.0, window_size=4),
        KNormConfig(budget=1.0),
        StreamingLLMConfig(budget=1.0),
        TOVAConfig(budget=1.0),
        H2OConfig(budget=1.0),
    ],
    ids=lambda c: c.type_tag,
)
def test_full_budget_keeps_everything_and_json_round_trips(tensors: tuple, config) -> None:
    masker = config.masker_class(config)
    budget = masker.budget(K)
    assert budget == K
    assert _kept(config, tensors, budget) == [set(range(K))] * HKV
    assert MaskerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("budget", [0.25, 7])
def test_uniform_budgets_respected(tensors: tuple, budget: float) -> None:
    for config in (SnapKVConfig(budget=budget, window_size=4), KNormConfig(budget=budget)):
        masker = config.masker_class(config)
        n = masker.budget(K)
        assert n == (7 if isinstance(budget, int) else int(0.25 * K))
        assert all(len(s) == n for s in _kept(config, tensors, n))


def test_bad_fields_name_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"SnapKVConfig.budget=0 "):
        SnapKVConfig(budget=0)
    with pytest.raises(ValueError, match=r"pooling='mean'"):
        SnapKVConfig(pooling="mean")
    with pytest.raises(ValueError, match=r"alpha_safeguard=2"):
        AdaKVConfig(alpha_safeguard=2)
    with pytest.raises(ValueError, match=r"decode_every=-1"):
        TOVAConfig(decode_every=-1)


def test_eviction_adds_no_mask_through_research_attention(tensors: tuple) -> None:
    from sah_core import ResearchAttention, ResearchAttentionConfig

    attention = ResearchAttention(ResearchAttentionConfig([SnapKVConfig()]))
    q, k, v = tensors
    with pytest.raises(ValueError, match="eviction"):
        attention.custom_attention(None, q[:, :, -1:], k, v, None, SCALE, layer_idx=0)
