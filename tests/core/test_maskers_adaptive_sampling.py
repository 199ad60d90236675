"""vAttention (AdaptiveSampling) against a row-loop reference of its documented procedure.

The statistical properties (unbiasedness, the (epsilon, delta) guarantee) are in
test_unbiasedness.py.
"""

from __future__ import annotations

import math

import naive_refs_b as refs
import pytest
import torch

from sah_core import AdaptiveSamplingMaskerConfig, Mask, ResearchMasker
from sah_core.maskers import adaptive_sampling

MIN = torch.finfo(torch.float32).min


def run(config, q, k, v, attention_mask=None, previous=None, **kwargs) -> Mask:
    masker = ResearchMasker.create_from_config(config)
    return refs.call_masker(masker, q, k, v, attention_mask, {}, previous, **kwargs)


def previous_mask(shape, seed: int = 1) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    b, h, q, k = shape
    rand = torch.randint(0, k, (b, h, q, 1), generator=gen)
    idx = torch.cat([torch.zeros(b, h, q, 1, dtype=torch.int64), rand], -1)
    return Mask.from_index(idx, torch.ones(b, h, q, 2), shape)


def record_draws(monkeypatch) -> list[torch.Tensor]:
    """The masker's uniform draws in call order (estimation sample, then kept keys), each
    ``[B, Hq, Q, W]`` (-1 padded); the draws' own distribution is tested in
    test_uniform_draws.py."""
    drawn: list[torch.Tensor] = []
    for name in ("draw_without_replacement", "draw_from_range"):
        original = getattr(adaptive_sampling, name)

        def recording(*args, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            drawn.append(out)
            return out

        monkeypatch.setattr(adaptive_sampling, name, recording)
    return drawn


def drawn_set(draw: torch.Tensor, row: tuple[int, int, int]) -> set[int]:
    return {j for j in draw[row].tolist() if j >= 0}


def naive_adaptive(cfg, q, k, scaling, attention_mask, previous: Mask, draw_base, draw_kept):
    """Row loop of the documented procedure, fed the masker's two uniform draws (each must
    be a subset of the row's population of the size the procedure asks for)."""
    b, hq, nq, _ = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    group = hq // hkv
    prev = previous.get_dense_mask()
    start = cfg.init_offset if isinstance(cfg.init_offset, int) else int(cfg.init_offset * nk)
    tail = cfg.local_offset if isinstance(cfg.local_offset, int) else int(cfg.local_offset * nk)
    z = math.sqrt(2) * float(torch.special.erfinv(torch.tensor(1 - cfg.delta, dtype=torch.float64)))
    out = prev.clone()
    for bi in range(b):
        for h in range(hq):
            for qi in range(nq):
                allowed = [
                    j
                    for j in range(nk)
                    if attention_mask is None or float(attention_mask[bi, 0, qi, j]) > MIN / 2
                ]
                pop = [j for j in allowed if start <= j < nk - tail and prev[bi, h, qi, j] == 0]
                if not pop:
                    continue
                n = len(pop)
                rate = cfg.base_rate_sampling
                wanted = math.floor(n * rate) if isinstance(rate, float) else rate
                n0 = min(max(2, wanted), n)
                logit = {j: float(q[bi, h, qi] @ k[bi, h // group, j]) * scaling for j in allowed}
                m = max(logit.values())
                x = {j: math.exp(s - m) for j, s in logit.items()}
                base = drawn_set(draw_base, (bi, h, qi))
                assert len(base) == n0 and base <= set(pop)
                static = sum(
                    x[j] / float(prev[bi, h, qi, j]) for j in allowed if prev[bi, h, qi, j] > 0
                )
                mean = sum(x[j] for j in base) / n0
                var = sum((x[j] - mean) ** 2 for j in base) / max(n0 - 1, 1)
                denom = static + n * mean
                needed = (z * n * math.sqrt(var) / (cfg.epsilon * denom)) ** 2
                budget = min(max(math.ceil(needed), n0), n)
                kept = drawn_set(draw_kept, (bi, h, qi))
                assert len(kept) == budget and kept <= set(pop)
                for j in kept:
                    out[bi, h, qi, j] = budget / n
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        AdaptiveSamplingMaskerConfig(0.1, 0.2, 0.2, 2, 3),
        AdaptiveSamplingMaskerConfig(4, 0.05, 0.1, 0.1, 0.1),
        AdaptiveSamplingMaskerConfig(0.3, 0.5, 0.5, 0, 0),
    ],
)
def test_adaptive_sampling_matches_reference(helpers, monkeypatch, cfg) -> None:
    b, hq, hkv, nq, nk = 1, 2, 1, 3, 48
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk, seed=5)
    am = helpers.causal_additive(b, nq, nk)
    prev = previous_mask((b, hq, nq, nk))
    drawn = record_draws(monkeypatch)
    got = run(cfg, q, k, v, am, prev).get_dense_mask()
    assert len(drawn) == 2
    expected = naive_adaptive(cfg, q, k, 8**-0.5, am, prev, *drawn)
    assert torch.allclose(got, expected.float(), atol=1e-5)


def test_adaptive_sampling_keeps_exactly_the_budget(helpers) -> None:
    """Each row keeps n = p * N keys (a fixed-size draw, not a Bernoulli count)."""
    q, k, v = helpers.make_qkv(b=1, hq=2, hkv=1, q=4, k=300, seed=4)
    torch.manual_seed(3)
    dense = run(AdaptiveSamplingMaskerConfig(0.05, 0.3, 0.3, 0, 0), q, k, v).get_dense_mask()
    kept = (dense > 0).sum(-1).float()
    p = dense.amax(-1)
    assert bool((p < 1).any())  # the budget is really below the population
    assert torch.allclose(kept, p * 300, atol=1e-3)


def test_adaptive_sampling_budget_grows_as_epsilon_shrinks(helpers) -> None:
    q, k, v = helpers.make_qkv(b=1, hq=2, hkv=1, q=1, k=400, seed=2)
    counts = []
    for eps in (0.5, 0.2, 0.05):
        torch.manual_seed(0)
        counts.append(
            run(AdaptiveSamplingMaskerConfig(0.05, eps, 0.1, 0, 0), q, k, v).get_density()
        )
    assert counts[0] <= counts[1] <= counts[2] and counts[0] < counts[2]


def test_batched_with_padding_keeps_each_rows_population() -> None:
    """At keep-probability 1 (a tiny epsilon) the kept keys are the population itself, so a
    padded batch row must sample from exactly the range it has alone (float offsets are
    fractions of the row's own key count)."""
    refs.check_batch_safe(
        lambda: ResearchMasker.create_from_config(
            AdaptiveSamplingMaskerConfig(0.1, 1e-4, 1e-3, init_offset=0.1, local_offset=0.2)
        )
    )
