"""Statistical properties of the sampling maskers, over many seeds.

* A sampling masker's weight is a true inclusion probability: for every key,
  ``E[1{kept} / w] = 1``. Checked for the heaviest keys, where a budget that depends on the
  kept sample (vAttention reusing its estimation sample) would show up as a deficit.
* vAttention's ``(epsilon, delta)`` promise: the softmax-denominator estimate misses the true
  one by more than ``epsilon`` (relative) in at most about a ``delta`` share of the draws.
* MagicPIG's weight is the probability, over the random hyperplanes, that a key collides with
  the query in at least two tables: ``E_planes[1{sampled} / u] = 1``.

Trials: one query copied over many rows gives independent draws per row in one call (every
row draws its own random keys); several seeds add more. Means are compared with 1 within
3 standard errors, the standard error taken over independent rows.
"""

from __future__ import annotations

import math

import naive_refs_b as refs
import torch

from sah_core import AdaptiveSamplingMaskerConfig, Mask, ResearchMasker
from sah_core.maskers.magic_pig import MagicPigConfig, collision_probability

MIN = torch.finfo(torch.float32).min


def inverse_weights(config, queries, keys, attention_mask=None, previous=None) -> torch.Tensor:
    """``1{kept} / w`` per key ``[B, H, Q, K]`` (0 where not kept) of one masker call."""
    masker = ResearchMasker.create_from_config(config)
    mask = refs.call_masker(masker, queries, keys, keys, attention_mask, {}, previous)
    w = mask.get_dense_mask()
    return torch.where(w > 0, 1.0 / w.clamp_min(1e-30), 0.0)


def exp_scores(queries, keys, attention_mask=None) -> torch.Tensor:
    logits = (queries @ keys.transpose(-1, -2)) * keys.shape[-1] ** -0.5
    if attention_mask is not None:
        logits = logits + attention_mask
    return torch.exp(logits - logits.amax(-1, keepdim=True))


def heaviest(x: torch.Tensor, share: float = 0.01) -> torch.Tensor:
    """Bool: the heaviest ``share`` of each row's attended keys (at least one)."""
    out = torch.zeros_like(x, dtype=torch.bool)
    for row in range(x.shape[2]):
        visible = int((x[0, 0, row] > 0).sum())
        out[0, 0, row, x[0, 0, row].topk(max(1, int(visible * share))).indices] = True
    return out


def mean_and_error(per_row: list[torch.Tensor]) -> tuple[float, float]:
    """Mean of independent per-row values and its standard error."""
    values = torch.cat(per_row).double()
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def decode_inputs(keys_len: int, rows: int, scale: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(1, 1, keys_len, 16, generator=gen)
    query = torch.randn(1, 1, 1, 16, generator=gen) * scale
    return query.expand(1, 1, rows, 16).contiguous(), keys


def test_vattention_heaviest_keys_unbiased_at_decode() -> None:
    queries, keys = decode_inputs(2048, 128, scale=1.5)
    heavy = heaviest(exp_scores(queries, keys))
    config = AdaptiveSamplingMaskerConfig(0.05, 0.3, 0.2)
    per_row, kept_share = [], []
    for seed in range(30):
        torch.manual_seed(seed)
        inv = inverse_weights(config, queries, keys)
        per_row.append((inv * heavy).sum(-1).flatten() / heavy.sum(-1).flatten())
        kept_share.append(float((inv > 0).float().mean()))
    mean, error = mean_and_error(per_row)
    assert sum(kept_share) / len(kept_share) < 0.6  # really sampling, not a full mask
    assert abs(mean - 1.0) <= 3 * error, (mean, error)


def test_vattention_heaviest_keys_unbiased_at_prefill(helpers) -> None:
    """Causal prefill: every row has its own query and population, plus a sink-like
    previous selection the estimate must count exactly."""
    gen = torch.Generator().manual_seed(1)
    nq, nk = 48, 1024
    keys = torch.randn(1, 1, nk, 16, generator=gen)
    queries = torch.randn(1, 1, nq, 16, generator=gen) * 1.5
    am = helpers.causal_additive(1, nq, nk)
    sink = torch.arange(4).expand(1, 1, nq, 4)
    previous = Mask.from_index(sink, torch.ones(1, 1, nq, 4), (1, 1, nq, nk))
    x = exp_scores(queries, keys, am)
    x[..., :4] = 0.0  # the heavy keys must be sampled ones, not the sink
    heavy = heaviest(x)
    config = AdaptiveSamplingMaskerConfig(0.05, 0.3, 0.2)
    per_row = []
    for seed in range(40):
        torch.manual_seed(seed)
        inv = inverse_weights(config, queries, keys, am, previous)
        per_row.append((inv * heavy).sum(-1).flatten() / heavy.sum(-1).flatten())
    mean, error = mean_and_error(per_row)
    assert abs(mean - 1.0) <= 3 * error, (mean, error)


def test_vattention_denominator_meets_epsilon_delta() -> None:
    """Share of draws whose denominator estimate misses by more than epsilon <= delta (+ the
    3-sigma binomial slack of the finite number of draws and 0.02 for the plug-in spread)."""
    queries, keys = decode_inputs(4096, 128, scale=1.0, seed=2)
    x = exp_scores(queries, keys)
    true = x.sum(-1)
    for epsilon, delta in ((0.1, 0.1), (0.05, 0.2)):
        config = AdaptiveSamplingMaskerConfig(0.05, epsilon, delta)
        misses, ratios, trials = 0, [], 0
        for seed in range(25):
            torch.manual_seed(seed)
            inv = inverse_weights(config, queries, keys)
            estimate = (x * inv).sum(-1) / true
            misses += int(((estimate - 1).abs() > epsilon).sum())
            trials += estimate.numel()
            ratios.append(estimate.flatten())
        share = misses / trials
        slack = 3 * math.sqrt(delta * (1 - delta) / trials) + 0.02
        assert share <= delta + slack, (epsilon, delta, share)
        mean, error = mean_and_error(ratios)
        assert abs(mean - 1.0) <= 3 * error, (mean, error)


def test_magic_pig_weight_is_the_collision_probability() -> None:
    """Over hyperplane seeds, a key is sampled with probability u (>= 2 collisions of L)."""
    gen = torch.Generator().manual_seed(0)
    d = 16
    query = torch.randn(1, 1, 1, d, generator=gen)
    # keys at a spread of angles to the query, so u ranges over (0, 1)
    mix = torch.linspace(0.0, 1.0, 12).view(12, 1)
    noise = torch.randn(12, d, generator=gen)
    keys = (mix * query[0, 0] + (1 - mix) * noise).view(1, 1, 12, d)
    bits, tables = 3, 6
    cosine = torch.nn.functional.cosine_similarity(query[0, 0], keys[0, 0], dim=-1)
    u = collision_probability(cosine, bits, tables).float()
    seeds = 600
    sampled = torch.zeros(12)
    for seed in range(seeds):
        config = MagicPigConfig(lsh_l=tables, lsh_k=bits, center=False, seed=seed)
        inv = inverse_weights(config, query, keys)[0, 0, 0]
        sampled += (inv > 0).float()
    rate = sampled / seeds
    error = torch.sqrt(u * (1 - u) / seeds)
    informative = (u > 0.02) & (u < 0.98)
    assert int(informative.sum()) >= 4
    assert bool(((rate - u).abs() <= 3 * error + 1e-3)[informative].all()), (rate, u)
