"""Every masker against a naive row-loop reference, plus the shared properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import (
    AdaptiveSamplingMaskerConfig,
    CausalMaskerConfig,
    LocalMaskerConfig,
    Mask,
    OracleTopKConfig,
    OracleTopPMaskerConfig,
    RandomSamplingMaskerConfig,
    ResearchMasker,
    SinkMaskerConfig,
)

MIN = torch.finfo(torch.float32).min


def run(config, q, k, v, attention_mask=None, previous=None, **kwargs) -> Mask:
    masker = ResearchMasker.create_from_config(config)
    shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    prev = previous if previous is not None else Mask.empty(shape)
    return masker.add_mask(
        k, q, v, attention_mask, q.shape[-1] ** -0.5, 0.0, {}, prev, layer_idx=0, **kwargs
    )


def row_sets(mask: Mask) -> list[list[list[list[int]]]]:
    dense = mask.get_dense_mask()
    b, h, q, _ = dense.shape
    return [
        [
            [sorted((dense[bi, hi, qi] > 0).nonzero().flatten().tolist()) for qi in range(q)]
            for hi in range(h)
        ]
        for bi in range(b)
    ]


def allowed_keys(attention_mask, bi: int, qi: int, k: int) -> list[int]:
    if attention_mask is None:
        return list(range(k))
    return [j for j in range(k) if float(attention_mask[bi, 0, qi, j]) > MIN / 2]


def previous_mask(shape, seed: int = 1) -> Mask:
    """A sink-like previous selection plus one random key per row (index form)."""
    gen = torch.Generator().manual_seed(seed)
    b, h, q, k = shape
    rand = torch.randint(0, k, (b, h, q, 1), generator=gen)
    idx = torch.cat([torch.zeros(b, h, q, 1, dtype=torch.int64), rand], -1)
    return Mask.from_index(idx, torch.ones(b, h, q, 2), shape)


# ----------------------------------------------------------------------- fixed patterns
@pytest.mark.parametrize("sink", [0, 1, 3, 30, 0.25])
def test_sink_matches_reference(helpers, sink) -> None:
    q, k, v = helpers.make_qkv(q=4, k=24)
    size = sink if isinstance(sink, int) else int(sink * 24)
    expected = list(range(min(size, 24)))
    got = row_sets(run(SinkMaskerConfig(sink), q, k, v))
    assert all(row == expected for b in got for h in b for row in h)


@pytest.mark.parametrize("window", [1, 4, 7, 24, 0.5])
def test_local_matches_reference(helpers, window) -> None:
    q, k, v = helpers.make_qkv(q=6, k=20)
    w = window if isinstance(window, int) else int(window * 20)
    got = row_sets(run(LocalMaskerConfig(window), q, k, v))
    for qi in range(6):
        pos = 20 - 6 + qi
        expected = (
            list(range(20)) if w >= 20 else [j for j in range(pos - w + 1, pos + 1) if 0 <= j < 20]
        )
        assert got[0][0][qi] == expected


def test_local_uses_given_query_positions(helpers) -> None:
    q, k, v = helpers.make_qkv(q=2, k=10)
    got = row_sets(run(LocalMaskerConfig(3), q, k, v, query_positions=torch.tensor([1, 5])))
    assert got[0][0] == [[0, 1], [3, 4, 5]]


def test_causal_matches_reference(helpers) -> None:
    q, k, v = helpers.make_qkv(q=5, k=9)
    got = row_sets(run(CausalMaskerConfig(), q, k, v))
    for qi in range(5):
        assert got[0][1][qi] == list(range(9 - 5 + qi + 1))
    q1 = q[:, :, -1:]
    assert run(CausalMaskerConfig(), q1, k, v).is_full()  # decode: everything is in the past


# ----------------------------------------------------------------------- top-k / top-p
def naive_topk(q, k, scaling, budget, attention_mask, previous: Mask) -> list:
    b, hq, nq, _ = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    prev = previous.get_dense_mask()
    out = []
    for bi in range(b):
        heads = []
        for h in range(hq):
            rows = []
            for qi in range(nq):
                already = [j for j in range(nk) if prev[bi, h, qi, j] > 0]
                avail = [j for j in allowed_keys(attention_mask, bi, qi, nk) if j not in already]
                scores = {
                    j: float(q[bi, h, qi] @ k[bi, h // (hq // hkv), j]) * scaling for j in avail
                }
                chosen = sorted(avail, key=lambda j: -scores[j])[: min(budget, len(avail))]
                rows.append(sorted(set(chosen) | set(already)))
            heads.append(rows)
        out.append(heads)
    return out


@pytest.mark.parametrize("heavy", [1, 3, 7, 0.2])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_previous", [False, True])
def test_oracle_topk_matches_reference(helpers, heavy, causal, with_previous) -> None:
    b, hq, hkv, nq, nk = 2, 4, 2, 5, 16
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk)
    am = helpers.causal_additive(b, nq, nk) if causal else None
    prev = previous_mask((b, hq, nq, nk)) if with_previous else Mask.empty((b, hq, nq, nk))
    got = run(OracleTopKConfig(heavy), q, k, v, am, prev, query_chunk_size=2)
    budget = heavy if isinstance(heavy, int) else int(heavy * nk)
    assert row_sets(got) == naive_topk(q, k, 8**-0.5, budget, am, prev)


def naive_top_p(q, k, scaling, top_p, attention_mask, previous: Mask) -> list:
    b, hq, nq, _ = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    prev = previous.get_dense_mask()
    out = []
    for bi in range(b):
        heads = []
        for h in range(hq):
            rows = []
            for qi in range(nq):
                allowed = allowed_keys(attention_mask, bi, qi, nk)
                logits = {
                    j: float(q[bi, h, qi] @ k[bi, h // (hq // hkv), j]) * scaling for j in allowed
                }
                m = max(logits.values())
                z = sum(math.exp(x - m) for x in logits.values())
                p = {j: math.exp(x - m) / z for j, x in logits.items()}
                already = {j for j in range(nk) if prev[bi, h, qi, j] > 0}
                mass = sum(p.get(j, 0.0) for j in already)
                chosen = set()
                for j in sorted((j for j in allowed if j not in already), key=lambda j: -p[j]):
                    if mass >= top_p - 1e-6:
                        break
                    chosen.add(j)
                    mass += p[j]
                rows.append(sorted(chosen | already))
            heads.append(rows)
        out.append(heads)
    return out


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("causal", [False, True])
def test_oracle_top_p_matches_reference(helpers, top_p, causal) -> None:
    b, hq, hkv, nq, nk = 1, 4, 2, 4, 12
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk, seed=3)
    q = q * 3  # peaked attention, so the nucleus is a real subset
    am = helpers.causal_additive(b, nq, nk) if causal else None
    prev = previous_mask((b, hq, nq, nk))
    got = run(OracleTopPMaskerConfig(top_p), q, k, v, am, prev)
    assert row_sets(got) == naive_top_p(q, k, 8**-0.5, top_p, am, prev)


# ----------------------------------------------------------------------- sampling
def test_random_sampling_matches_reference(helpers) -> None:
    b, hq, nq, nk = 1, 2, 3, 40
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=1, q=nq, k=nk)
    am = helpers.causal_additive(b, nq, nk)
    prev = previous_mask((b, hq, nq, nk))
    torch.manual_seed(11)
    got = run(RandomSamplingMaskerConfig(0.3), q, k, v, am, prev).get_dense_mask()
    torch.manual_seed(11)
    draws = torch.rand(b, hq, nq, nk)  # the masker's single chunk draw
    prev_dense = prev.get_dense_mask()
    for h in range(hq):
        for qi in range(nq):
            for j in range(nk):
                eligible = prev_dense[0, h, qi, j] == 0 and float(am[0, 0, qi, j]) == 0.0
                if prev_dense[0, h, qi, j] > 0:
                    expected = 1.0
                elif eligible and draws[0, h, qi, j] < 0.3:
                    expected = 0.3
                else:
                    expected = 0.0
                assert float(got[0, h, qi, j]) == pytest.approx(expected)


def test_random_sampling_estimator_is_unbiased(helpers) -> None:
    q, k, v = helpers.make_qkv(b=1, hq=1, hkv=1, q=1, k=60)
    scores = (q[0, 0, 0] @ k[0, 0].T) * 8**-0.5
    exp = torch.exp(scores - scores.max())
    estimates = []
    for seed in range(400):
        torch.manual_seed(seed)
        w = run(RandomSamplingMaskerConfig(0.25), q, k, v).get_dense_mask()[0, 0, 0]
        estimates.append(float(torch.where(w > 0, exp / w.clamp_min(1e-9), 0.0).sum()))
    mean = sum(estimates) / len(estimates)
    assert mean == pytest.approx(float(exp.sum()), rel=0.05)


# vAttention (AdaptiveSampling): tests/core/test_maskers_adaptive_sampling.py and
# tests/core/test_unbiasedness.py.


# ----------------------------------------------------------------------- shared properties
CONFIG_STRATEGIES = {
    "sink": st.builds(SinkMaskerConfig, st.integers(0, 20)),
    "local": st.builds(LocalMaskerConfig, st.integers(0, 20)),
    "causal": st.just(CausalMaskerConfig()),
    "topk": st.builds(OracleTopKConfig, st.one_of(st.integers(0, 20), st.floats(0.05, 1.0))),
    "top_p": st.builds(OracleTopPMaskerConfig, st.floats(0.05, 1.0)),
    "random": st.builds(RandomSamplingMaskerConfig, st.floats(0.05, 1.0)),
    "adaptive": st.builds(
        AdaptiveSamplingMaskerConfig,
        st.floats(0.05, 1.0),
        st.floats(0.05, 0.9),
        st.floats(0.05, 0.9),
        st.integers(0, 4),
        st.integers(0, 4),
    ),
}
SELECTIVE = {"topk", "top_p", "random", "adaptive"}  # never select a forbidden key


@pytest.mark.parametrize("kind", sorted(CONFIG_STRATEGIES))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_masker_properties(helpers, kind, data) -> None:
    cfg = data.draw(CONFIG_STRATEGIES[kind])
    hkv = data.draw(st.sampled_from([1, 2]))
    nq = data.draw(st.integers(1, 5))
    nk = data.draw(st.integers(nq, 18))
    seed = data.draw(st.integers(0, 1000))
    q, k, v = helpers.make_qkv(b=2, hq=4, hkv=hkv, q=nq, k=nk, seed=seed)
    am = helpers.causal_additive(2, nq, nk)
    prev = previous_mask((2, 4, nq, nk), seed)
    prev_idx, prev_w = prev.get_index_form()
    snapshot = [t.clone() for t in (q, k, v, am, prev_idx, prev_w)]
    chunk = data.draw(st.sampled_from([None, 1, 2]))

    torch.manual_seed(seed)
    mask = run(cfg, q, k, v, am, prev, query_chunk_size=chunk)
    torch.manual_seed(seed)
    again = run(cfg, q, k, v, am, prev, query_chunk_size=chunk)

    dense = mask.get_dense_mask()
    assert mask.shape == (2, 4, nq, nk)
    assert bool((dense >= 0).all() and (dense <= 1).all())
    assert torch.equal(dense, again.get_dense_mask())  # deterministic under a seed
    # the previous selection survives the union, and nothing was mutated
    assert bool((dense >= prev.get_dense_mask()).all())
    now_idx, now_w = prev.get_index_form()
    for before, after in zip(snapshot, (q, k, v, am, now_idx, now_w), strict=True):
        assert torch.equal(before, after)
    if kind in SELECTIVE and not mask.is_full():
        added = (dense > 0) & (prev.get_dense_mask() == 0)
        forbidden = (am <= MIN / 2).expand_as(dense)
        assert not bool((added & forbidden).any())
    if kind == "topk" and not mask.is_full():
        budget = cfg.heavy_size if isinstance(cfg.heavy_size, int) else int(cfg.heavy_size * nk)
        budget = max(budget, 1) if isinstance(cfg.heavy_size, float) else budget
        prev_dense = prev.get_dense_mask()
        available = ((prev_dense == 0) & ~forbidden_mask(am, dense)).sum(-1)
        added_count = ((dense > 0) & (prev_dense == 0)).sum(-1)
        assert torch.equal(added_count, available.clamp(max=budget))


def forbidden_mask(am: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (am <= MIN / 2).expand_as(like)


def test_topk_full_budget_gives_full_mask(helpers) -> None:
    q, k, v = helpers.make_qkv(k=10)
    assert run(OracleTopKConfig(10), q, k, v).is_full()
    assert run(OracleTopKConfig(1.0), q, k, v).is_full()
    assert run(SinkMaskerConfig(10), q, k, v).is_full()
    assert run(LocalMaskerConfig(99), q, k, v).is_full()
