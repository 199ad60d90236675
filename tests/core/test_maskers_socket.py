"""SOCKET soft-collision top-k masker against a naive per-row, per-table reference."""

from __future__ import annotations

import math

import naive_refs_b as refs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import MaskerConfig, ResearchMasker
from sah_core.maskers.socket_topk import SocketMasker, SocketMaskerConfig, hyperplanes


def naive_scores(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    bits: int,
    tables: int,
    tau: float,
    layer: int,
) -> torch.Tensor:
    """log( sum_l prod_j sigmoid(2 s_j(k) u_lj(q) / tau) * ||v_k|| ), with plain loops."""
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    planes = hyperplanes(layer, tables, bits, d).double()
    out = torch.zeros(b, hq, q, k, dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            for ki in range(k):
                key = keys[bi, hi // group, ki].double()
                signs = [
                    [1.0 if float(planes[t, j] @ key) >= 0 else -1.0 for j in range(bits)]
                    for t in range(tables)
                ]
                for qi in range(q):
                    query = queries[bi, hi, qi].double()
                    log_terms = []
                    for t in range(tables):
                        log_p = 0.0
                        for j in range(bits):
                            x = 2.0 * signs[t][j] * float(planes[t, j] @ query) / tau
                            log_p += -math.log1p(math.exp(-x)) if x > -30 else x
                        log_terms.append(log_p)
                    top = max(log_terms)
                    soft_count = top + math.log(sum(math.exp(v - top) for v in log_terms))
                    value_norm = float(values[bi, hi // group, ki].double().norm())
                    out[bi, hi, qi, ki] = soft_count + math.log(value_norm)
    return out


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"SocketMaskerConfig\.K="):
        SocketMaskerConfig(heavy_size=2, K=0)
    with pytest.raises(ValueError, match=r"SocketMaskerConfig\.L="):
        SocketMaskerConfig(heavy_size=2, L=-1)
    with pytest.raises(ValueError, match=r"SocketMaskerConfig\.L=100000 .*\[1, 1024\]"):
        SocketMaskerConfig(heavy_size=2, L=10**5)  # memory-only values are refused
    with pytest.raises(ValueError, match=r"SocketMaskerConfig\.K=65 .*\[1, 64\]"):
        SocketMaskerConfig(heavy_size=2, K=65)
    with pytest.raises(ValueError, match="tau"):
        SocketMaskerConfig(heavy_size=2, tau=0.0)
    with pytest.raises(ValueError, match="heavy_size"):
        SocketMaskerConfig(heavy_size="all")  # type: ignore[arg-type]


def test_config_round_trip_and_registry() -> None:
    config = SocketMaskerConfig(heavy_size=0.1, K=4, L=6, tau=0.5)
    again = MaskerConfig.from_dict(config.to_dict())
    assert again == config
    assert isinstance(ResearchMasker.create_from_config(again), SocketMasker)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 1000),
    hkv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2]),
    q=st.integers(1, 4),
    k=st.integers(4, 12),
    heavy=st.integers(1, 8),
    bits=st.sampled_from([1, 3, 8, 10]),
    tables=st.sampled_from([1, 4]),
    tau=st.sampled_from([0.3, 1.0, 4.0]),
)
def test_matches_naive_reference(
    seed: int, hkv: int, group: int, q: int, k: int, heavy: int, bits: int, tables: int, tau: float
) -> None:
    hq = hkv * group
    queries, keys, values = refs.make_qkv(seed, 1, hq, hkv, q, k, 6)
    attn = refs.causal_mask(1, q, k)
    masker = SocketMasker(SocketMaskerConfig(heavy_size=heavy, K=bits, L=tables, tau=tau))
    mask = refs.call_masker(masker, queries, keys, values, attn, {}, layer_idx=2)
    if heavy >= k:
        assert mask.is_full()
        return
    ref = naive_scores(queries, keys, values, bits, tables, tau, 2)
    refs.check_valid_topk(refs.selected(mask), ref, refs.allowed_keys(attn, ref.shape), heavy)
    call = refs.plan(queries, keys, values, attn, layer_idx=2)
    mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
    torch.testing.assert_close(mine.double(), ref, rtol=1e-4, atol=1e-4)


def test_aligned_key_wins_and_layers_use_different_planes() -> None:
    queries, keys, values = refs.make_qkv(5, 1, 1, 1, 1, 32, 16)
    keys[0, 0, 17] = 3.0 * queries[0, 0, 0]
    values = torch.ones_like(values)  # equal value norms: the collision count decides
    masker = SocketMasker(SocketMaskerConfig(heavy_size=1, K=6, L=24, tau=0.5))
    mask = refs.call_masker(masker, queries, keys, values)
    assert refs.selected(mask)[0, 0, 0].nonzero().flatten().tolist() == [17]
    assert not torch.equal(hyperplanes(0, 2, 3, 8), hyperplanes(1, 2, 3, 8))


def test_common_properties() -> None:
    refs.check_common_properties(
        lambda: SocketMasker(SocketMaskerConfig(heavy_size=5, K=3, L=4, tau=0.7)),
        SocketMaskerConfig(heavy_size=1.0, K=3, L=4),
    )


def test_state_reuse_matches_recompute() -> None:
    refs.check_state_reuse(lambda: SocketMasker(SocketMaskerConfig(heavy_size=5, K=3, L=5)))


@pytest.mark.parametrize("bits", [8, 10, 17])
def test_multi_chunk_codes_match_naive(bits: int) -> None:
    # codes wider than one 8-bit lookup chunk
    queries, keys, values = refs.make_qkv(11, 1, 2, 1, 2, 9, 6)
    masker = SocketMasker(SocketMaskerConfig(heavy_size=3, K=bits, L=2, tau=2.0))
    call = refs.plan(queries, keys, values)
    mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
    ref = naive_scores(queries, keys, values, bits, 2, 2.0, 0)
    torch.testing.assert_close(mine.double(), ref, rtol=1e-4, atol=1e-4)


def test_blocking_does_not_change_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    import sah_core.maskers.socket_topk as socket_module

    queries, keys, values = refs.make_qkv(12, 1, 4, 2, 5, 30, 8)
    masker = SocketMasker(SocketMaskerConfig(heavy_size=4, K=5, L=6, tau=0.8))
    call = refs.plan(queries, keys, values)
    chunk, state = call.query_chunks()[0], masker.prepare(call)
    whole = masker.key_scores(call, chunk, state)
    monkeypatch.setattr(socket_module, "BLOCK_ELEMENTS", 64)  # many row and table blocks
    blocked = masker.key_scores(call, chunk, state)
    torch.testing.assert_close(blocked, whole)


def test_large_value_norm_lifts_a_key() -> None:
    """Equal collision counts: the key with the larger value norm ranks first."""
    queries, keys, values = refs.make_qkv(6, 1, 1, 1, 1, 8, 8)
    keys[0, 0] = keys[0, 0, :1]  # every key hashes alike
    values[0, 0, 5] *= 10.0
    masker = SocketMasker(SocketMaskerConfig(heavy_size=1, K=4, L=8))
    mask = refs.call_masker(masker, queries, keys, values)
    assert refs.selected(mask)[0, 0, 0].nonzero().flatten().tolist() == [5]


def test_batched_with_padding_equals_one_by_one() -> None:
    refs.check_batch_safe(lambda: SocketMasker(SocketMaskerConfig(heavy_size=5, K=3, L=5)))
