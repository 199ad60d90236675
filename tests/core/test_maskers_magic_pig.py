"""MagicPIG LSH-sampling masker against a naive per-row SimHash reference."""

from __future__ import annotations

import math
from typing import Any

import naive_refs_b as refs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import Mask, MaskerConfig, ResearchMasker
from sah_core.maskers.magic_pig import MagicPig, MagicPigConfig, simhash_planes


def naive_mask(
    queries: torch.Tensor,
    keys: torch.Tensor,
    config: MagicPigConfig,
    allowed: torch.Tensor,
    center_len: int | None = None,
    layer: int = 0,
) -> torch.Tensor:
    """Dense weights: u(theta) where the key collides in >= 2 tables, else 0 (plain loops)."""
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    tables, bits = config.lsh_l, config.lsh_k
    planes = simhash_planes(config.seed, layer, tables, bits, d).double()
    out = torch.zeros(b, hq, q, k, dtype=torch.float64)

    def code(x: torch.Tensor, t: int) -> tuple[bool, ...]:
        return tuple(float(planes[t, j] @ x) >= 0 for j in range(bits))

    for bi in range(b):
        for hi in range(hq):
            kv = hi // group
            n = k if center_len is None else center_len
            center = keys[bi, kv, :n].double().mean(0) if config.center else torch.zeros(d).double()
            for qi in range(q):
                query = queries[bi, hi, qi].double()
                for ki in range(k):
                    if not bool(allowed[bi, hi, qi, ki]):
                        continue
                    key = keys[bi, kv, ki].double() - center
                    hits = sum(code(query, t) == code(key, t) for t in range(tables))
                    if hits < 2:
                        continue
                    cos = float(query @ key) / (float(query.norm()) * float(key.norm()))
                    p = (1 - math.acos(max(-1.0, min(1.0, cos))) / math.pi) ** bits
                    u = 1 - (1 - p) ** tables - tables * p * (1 - p) ** (tables - 1)
                    out[bi, hi, qi, ki] = max(u, 1e-6)
    return out


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="lsh_l"):
        MagicPigConfig(lsh_l=1)
    with pytest.raises(ValueError, match=r"lsh_l=100000 is not allowed: use an int in \[2, 1024\]"):
        MagicPigConfig(lsh_l=10**5)  # would allocate gigabytes of codes per layer
    with pytest.raises(ValueError, match="lsh_k"):
        MagicPigConfig(lsh_k=0)
    with pytest.raises(ValueError, match="lsh_k"):
        MagicPigConfig(lsh_k=63)
    with pytest.raises(ValueError, match="center"):
        MagicPigConfig(center="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="packing"):
        MagicPigConfig(packing="int32")
    with pytest.raises(ValueError, match="seed"):
        MagicPigConfig(seed=-1)


def test_config_round_trip_and_registry() -> None:
    config = MagicPigConfig(lsh_l=10, lsh_k=4, center=False, packing="float", seed=3)
    again = MaskerConfig.from_dict(config.to_dict())
    assert again == config
    masker = ResearchMasker.create_from_config(again)
    assert isinstance(masker, MagicPig) and masker.is_sampling


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 1000),
    hkv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2]),
    q=st.integers(1, 4),
    k=st.integers(4, 12),
    bits=st.sampled_from([1, 2, 3]),
    tables=st.sampled_from([2, 5]),
    center=st.booleans(),
    packing=st.sampled_from(["int64", "float"]),
)
def test_matches_naive_reference(
    seed: int,
    hkv: int,
    group: int,
    q: int,
    k: int,
    bits: int,
    tables: int,
    center: bool,
    packing: str,
) -> None:
    hq = hkv * group
    queries, keys, values = refs.make_qkv(seed, 1, hq, hkv, q, k, 6)
    attn = refs.causal_mask(1, q, k)
    config = MagicPigConfig(lsh_l=tables, lsh_k=bits, center=center, packing=packing, seed=seed)
    mask = refs.call_masker(MagicPig(config), queries, keys, values, attn, {}, query_chunk_size=2)
    ref = naive_mask(queries, keys, config, refs.allowed_keys(attn, (1, hq, q, k)))
    dense = mask.get_dense_mask().double()
    assert torch.equal(dense > 0, ref > 0)
    torch.testing.assert_close(dense, ref, rtol=1e-4, atol=1e-7)


def test_packings_agree_and_seed_matters() -> None:
    queries, keys, values = refs.make_qkv(4, 1, 4, 2, 3, 40, 16)
    masks = {
        (packing, seed): refs.call_masker(
            MagicPig(MagicPigConfig(lsh_l=12, lsh_k=3, packing=packing, seed=seed)),
            queries,
            keys,
            values,
        ).get_dense_mask()
        for packing in ("int64", "float")
        for seed in (0, 1)
    }
    assert torch.equal(masks[("int64", 0)], masks[("float", 0)])
    assert torch.equal(masks[("int64", 1)], masks[("float", 1)])
    assert not torch.equal(masks[("int64", 0)], masks[("int64", 1)])


def test_properties_weights_causality_previous_and_output() -> None:
    queries, keys, values = refs.make_qkv(6, 1, 4, 2, 6, 20, 8)
    attn = refs.causal_mask(1, 6, 20)
    previous = Mask.from_index(
        torch.zeros(1, 4, 6, 1, dtype=torch.int64), torch.ones(1, 4, 6, 1), (1, 4, 6, 20)
    )
    before = previous.get_index_form()
    config = MagicPigConfig(lsh_l=8, lsh_k=2, seed=5)
    mask = refs.call_masker(MagicPig(config), queries, keys, values, attn, {}, previous)
    dense = mask.get_dense_mask()
    assert float(dense.min()) >= 0 and float(dense.max()) <= 1
    assert not bool((dense[~refs.allowed_keys(attn, dense.shape)] > 0).any())
    assert bool((dense[..., 0] == 1).all())
    after = previous.get_index_form()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    again = refs.call_masker(MagicPig(config), queries, keys, values, attn, {}, previous)
    assert torch.equal(again.get_dense_mask(), dense)
    # attention through ResearchAttention = importance-weighted attention under the naive mask
    out = refs.research_output([config], queries, keys, values, attn)
    weights = naive_mask(queries, keys, config, refs.allowed_keys(attn, dense.shape))
    weights = torch.where(weights > 0, weights, 0.0)
    ref = refs.dense_reference(queries, keys, values, attn, weights.float())
    rows_with_keys = (weights > 0).any(-1)
    assert float((out.double() - ref)[rows_with_keys].abs().max()) <= 1e-5


def test_decode_reuses_prefill_centre_and_codes() -> None:
    config = MagicPigConfig(lsh_l=6, lsh_k=2, center=True, seed=1)
    prefill, steps = 10, 4
    queries, keys, values = refs.make_qkv(8, 1, 2, 1, prefill + steps, prefill + steps, 8)
    masker = MagicPig(config)
    meta: dict[Any, Any] = {}
    for k, q_slice, mask in refs.prefill_then_decode(masker, queries, keys, values, prefill, meta):
        ref = naive_mask(
            q_slice, keys[:, :, :k], config, torch.ones(1, 2, 1, k, dtype=torch.bool), prefill
        )
        torch.testing.assert_close(mask.get_dense_mask().double(), ref, rtol=1e-4, atol=1e-7)
    no_center = MagicPigConfig(lsh_l=6, lsh_k=2, center=False, seed=1)
    refs.check_state_reuse(lambda: MagicPig(no_center), hq=2)


def test_blocked_collision_count_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import sah_core.maskers.magic_pig as magic_pig_module

    queries, keys, values = refs.make_qkv(13, 1, 4, 2, 3, 25, 8)
    config = MagicPigConfig(lsh_l=7, lsh_k=2, seed=2)
    whole = refs.call_masker(MagicPig(config), queries, keys, values).get_dense_mask()
    monkeypatch.setattr(magic_pig_module, "BLOCK_ELEMENTS", 8)  # one table per block
    blocked = refs.call_masker(MagicPig(config), queries, keys, values).get_dense_mask()
    assert torch.equal(whole, blocked) and bool((whole > 0).any())


@pytest.mark.parametrize("center", [True, False])
def test_batched_with_padding_equals_one_by_one(center: bool) -> None:
    refs.check_batch_safe(lambda: MagicPig(MagicPigConfig(lsh_l=6, lsh_k=2, center=center)))
