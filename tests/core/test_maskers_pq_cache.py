"""PQCache top-k masker against a naive loop k-means / product-quantisation reference."""

from __future__ import annotations

from typing import Any

import naive_refs_b as refs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import MaskerConfig, ResearchMasker
from sah_core.maskers.pq_cache import PQCache, PQCacheConfig


def nearest(x: torch.Tensor, centroids: list[torch.Tensor], metric: str) -> int:
    best, best_value = 0, None
    for c, centroid in enumerate(centroids):
        if metric == "euclidean":
            value = -float(((x - centroid) ** 2).sum())
        else:
            value = float(x @ centroid)
        if best_value is None or value > best_value:
            best, best_value = c, value
    return best


def naive_scores(
    queries: torch.Tensor, keys: torch.Tensor, fit_len: int, config: PQCacheConfig
) -> torch.Tensor:
    """Fit k-means on keys[offset:fit_len] per (batch, KV head, sub-space) with loops, code
    every key, score q . k_hat; sink keys get -inf."""
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    m, offset = config.pq_group_factor, config.init_offset
    sub = d // m
    approx = torch.zeros(b, hkv, k, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(hkv):
            for s in range(m):
                cols = slice(s * sub, (s + 1) * sub)
                points = [keys[bi, h, i, cols].double() for i in range(offset, fit_len)]
                count = min(2**config.pq_bits, len(points))
                starts = torch.linspace(0, len(points) - 1, count).round().long().tolist()
                centroids = [points[i].clone() for i in starts]
                for _ in range(config.kmeans_iter):
                    members: list[list[torch.Tensor]] = [[] for _ in centroids]
                    for x in points:
                        members[nearest(x, centroids, config.metric)].append(x)
                    centroids = [
                        torch.stack(group_points).mean(0) if group_points else centroids[c]
                        for c, group_points in enumerate(members)
                    ]
                for i in range(k):
                    x = keys[bi, h, i, cols].double()
                    approx[bi, h, i, cols] = centroids[nearest(x, centroids, config.metric)]
    out = torch.zeros(b, hq, q, k, dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            for qi in range(q):
                for i in range(k):
                    if i < offset:
                        out[bi, hi, qi, i] = float("-inf")
                    else:
                        out[bi, hi, qi, i] = float(
                            queries[bi, hi, qi].double() @ approx[bi, hi // group, i]
                        )
    return out


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="pq_group_factor"):
        PQCacheConfig(heavy_size=2, pq_group_factor=0)
    with pytest.raises(ValueError, match="pq_bits"):
        PQCacheConfig(heavy_size=2, pq_bits=0)
    with pytest.raises(ValueError, match="kmeans_iter"):
        PQCacheConfig(heavy_size=2, kmeans_iter=-1)
    with pytest.raises(ValueError, match="init_offset"):
        PQCacheConfig(heavy_size=2, init_offset=-3)
    with pytest.raises(ValueError, match="metric"):
        PQCacheConfig(heavy_size=2, metric="cosine")
    masker = PQCache(PQCacheConfig(heavy_size=2, pq_group_factor=3))
    queries, keys, values = refs.make_qkv(0, 1, 2, 2, 1, 10, 8)
    with pytest.raises(ValueError, match="pq_group_factor=3"):
        refs.call_masker(masker, queries, keys, values)


def test_config_round_trip_and_registry() -> None:
    config = PQCacheConfig(heavy_size=0.2, pq_group_factor=4, pq_bits=3, metric="ip")
    again = MaskerConfig.from_dict(config.to_dict())
    assert again == config
    assert isinstance(ResearchMasker.create_from_config(again), PQCache)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 1000),
    hkv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2]),
    q=st.integers(1, 4),
    k=st.integers(6, 16),
    heavy=st.integers(1, 6),
    parts=st.sampled_from([1, 2, 4]),
    bits=st.sampled_from([1, 2, 3]),
    iterations=st.sampled_from([0, 1, 3]),
    offset=st.sampled_from([0, 2]),
    metric=st.sampled_from(["euclidean", "ip"]),
)
def test_matches_naive_reference(
    seed: int,
    hkv: int,
    group: int,
    q: int,
    k: int,
    heavy: int,
    parts: int,
    bits: int,
    iterations: int,
    offset: int,
    metric: str,
) -> None:
    hq = hkv * group
    queries, keys, values = refs.make_qkv(seed, 1, hq, hkv, q, k, 8)
    attn = refs.causal_mask(1, q, k)
    config = PQCacheConfig(
        heavy_size=heavy,
        pq_group_factor=parts,
        pq_bits=bits,
        kmeans_iter=iterations,
        init_offset=offset,
        metric=metric,
    )
    masker = PQCache(config)
    mask = refs.call_masker(masker, queries, keys, values, attn, {})
    if heavy >= k:
        assert mask.is_full()
        return
    ref = naive_scores(queries, keys, k, config)
    allowed = refs.allowed_keys(attn, ref.shape).clone()
    allowed[..., :offset] = False  # the sink region is not PQCache's to select
    refs.check_valid_topk(refs.selected(mask), ref, allowed, heavy)
    call = refs.plan(queries, keys, values, attn)
    mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
    torch.testing.assert_close(mine.double(), ref, rtol=1e-4, atol=1e-4)


def test_decode_reuses_prefill_centroids_and_codes_new_keys() -> None:
    config = PQCacheConfig(heavy_size=4, pq_group_factor=2, pq_bits=2, kmeans_iter=3, init_offset=1)
    prefill, steps = 12, 4
    queries, keys, values = refs.make_qkv(3, 1, 4, 2, prefill + steps, prefill + steps, 8)
    masker = PQCache(config)
    meta: dict[Any, Any] = {}
    for k, q_slice, mask in refs.prefill_then_decode(masker, queries, keys, values, prefill, meta):
        ref = naive_scores(q_slice, keys[:, :, :k], prefill, config)
        allowed = torch.ones(ref.shape, dtype=torch.bool)
        allowed[..., :1] = False
        refs.check_valid_topk(refs.selected(mask), ref, allowed, 4)
    # a new request (different keys) refits instead of using stale centroids
    other_q, other_k, other_v = refs.make_qkv(9, 1, 4, 2, 1, prefill, 8)
    mask = refs.call_masker(masker, other_q, other_k, other_v, None, meta)
    fresh = refs.call_masker(PQCache(config), other_q, other_k, other_v, None, {})
    assert torch.equal(refs.selected(mask), refs.selected(fresh))


def test_common_properties() -> None:
    refs.check_common_properties(
        lambda: PQCache(PQCacheConfig(heavy_size=5, pq_group_factor=2, pq_bits=2, kmeans_iter=2)),
        PQCacheConfig(heavy_size=1.0),
        tied_scores=True,
    )


@pytest.mark.parametrize("offset", [0, 2])
def test_batched_with_padding_equals_one_by_one(offset: int) -> None:
    refs.check_batch_safe(
        lambda: PQCache(
            PQCacheConfig(
                heavy_size=5, pq_group_factor=2, pq_bits=3, kmeans_iter=4, init_offset=offset
            )
        )
    )
