"""TidalDecode: selection layers pick top-k, the following layers reuse the pick."""

from __future__ import annotations

import pytest
import torch

from sah_core import (
    CallPlan,
    Mask,
    ResearchAttention,
    ResearchAttentionConfig,
    TidalDecodeMaskerConfig,
)

MIN = torch.finfo(torch.float32).min


def naive_pick(queries, keys, attention_mask, scaling, budget) -> list[list[list[set[int]]]]:
    """Per (batch, head, row): the row's own key plus the top ``budget - 1`` allowed others by
    q . k (plain loops)."""
    b, hq, q, _ = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    out = []
    for bi in range(b):
        heads = []
        for h in range(hq):
            rows = []
            for r in range(q):
                pos = k - q + r
                allowed = [
                    j
                    for j in range(k)
                    if attention_mask is None or float(attention_mask[bi, 0, r, j]) > MIN / 2
                ]
                scores = {
                    j: float(queries[bi, h, r] @ keys[bi, h // (hq // hkv), j]) * scaling
                    for j in allowed
                    if j != pos
                }
                best = sorted(scores, key=lambda j: -scores[j])[: budget - 1]
                rows.append({pos, *best})
            heads.append(rows)
        out.append(heads)
    return out


def sets(mask: Mask) -> list[list[list[set[int]]]]:
    dense = mask.get_dense_mask()
    return [
        [
            [set((dense[bi, h, r] > 0).nonzero().flatten().tolist()) for r in range(dense.shape[2])]
            for h in range(dense.shape[1])
        ]
        for bi in range(dense.shape[0])
    ]


def run_layers(config, layers, b=1, q=1, k=30, seed=0, attention_mask=None):
    """One step through ``layers`` decoder layers (fresh q/k per layer), shared state."""
    attention = ResearchAttention(ResearchAttentionConfig([config]))
    state: dict = {}
    gen = torch.Generator().manual_seed(seed)
    inputs, masks = [], []
    for layer in range(layers):
        queries = torch.randn(b, 4, q, 8, generator=gen)
        keys = torch.randn(b, 2, k, 8, generator=gen)
        values = torch.randn(b, 2, k, 8, generator=gen)
        call = CallPlan.build(
            queries, keys, values, attention_mask, layer_idx=layer, sparse_meta_data=state
        )
        inputs.append(call)
        masks.append(attention.mask_for(call))
    return inputs, masks


@pytest.mark.parametrize(("q", "budget"), [(1, 5), (3, 7)])
def test_selection_and_reuse_match_loops(q, budget) -> None:
    cfg = TidalDecodeMaskerConfig(heavy_size=budget, sparse_layer_start=2, reselection_layers=(4,))
    calls, masks = run_layers(cfg, 7, b=2, q=q, k=30, seed=q)
    assert masks[0].is_full() and masks[1].is_full()  # dense layers
    assert masks[2].is_full() and masks[4].is_full()  # selection layers attend everything
    for source, users in ((2, (3,)), (4, (5, 6))):
        call = calls[source]
        want = naive_pick(call.queries, call.keys, None, call.scaling, budget)
        for layer in users:
            assert sets(masks[layer]) == want  # the selection layer's pick, reused


def naive_shared_pick(queries, keys, attention_mask, scaling, budget) -> list[list[set[int]]]:
    """Per (batch, row), one set for every head: own key, then the heads' top allowed others
    taken rank by rank (head 0's best, head 1's best, ..., head 0's second, ...), first
    occurrence kept, until ``budget - 1`` others (plain loops)."""
    b, hq, q, _ = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    out = []
    for bi in range(b):
        rows = []
        for r in range(q):
            pos = k - q + r
            allowed = [
                j
                for j in range(k)
                if j != pos
                and (attention_mask is None or float(attention_mask[bi, 0, r, j]) > MIN / 2)
            ]
            ranked = []
            for h in range(hq):
                kv = h // (hq // hkv)
                score = {j: float(queries[bi, h, r] @ keys[bi, kv, j]) for j in allowed}
                ranked.append(sorted(allowed, key=lambda j: -score[j])[: budget - 1])
            merged: list[int] = []
            for rank in range(budget - 1):
                for h in range(hq):
                    if rank < len(ranked[h]) and ranked[h][rank] not in merged:
                        merged.append(ranked[h][rank])
            rows.append({pos, *merged[: budget - 1]})
        out.append(rows)
    return out


@pytest.mark.parametrize(("q", "budget"), [(1, 6), (3, 5)])
def test_shared_heads_pick_matches_loops(q, budget) -> None:
    """``shared_heads``: every head of a reuse layer attends the same merged set."""
    cfg = TidalDecodeMaskerConfig(
        heavy_size=budget, sparse_layer_start=1, reselection_layers=(), shared_heads=True
    )
    am = None
    if q > 1:  # causal question rows
        am = torch.where(
            torch.arange(30) <= (torch.arange(q) + 30 - q).unsqueeze(-1), 0.0, MIN
        ).expand(2, 1, q, 30)
    calls, masks = run_layers(cfg, 3, b=2, q=q, k=30, seed=5 + q, attention_mask=am)
    assert masks[0].is_full() and masks[1].is_full()
    call = calls[1]
    want = naive_shared_pick(call.queries, call.keys, am, call.scaling, budget)
    got = sets(masks[2])
    for bi in range(2):
        for h in range(call.num_q_heads):
            assert got[bi][h] == want[bi]


@pytest.mark.parametrize("shared", [False, True])
def test_batched_with_padding_equals_one_by_one(shared) -> None:
    """Left-padded rows pick the same keys (shifted) as the rows alone."""
    cfg = TidalDecodeMaskerConfig(
        heavy_size=0.3, sparse_layer_start=0, reselection_layers=(), shared_heads=shared
    )
    gen = torch.Generator().manual_seed(3)
    lengths = (20, 14)
    k = max(lengths)
    queries = torch.randn(2, 4, 1, 8, generator=gen)
    keys = torch.randn(2, 2, k, 8, generator=gen)
    values = torch.randn(2, 2, k, 8, generator=gen)
    am = torch.zeros(2, 1, 1, k)
    am[1, ..., : k - lengths[1]] = MIN
    attention = ResearchAttention(ResearchAttentionConfig([cfg]))
    batched: dict = {}
    call = CallPlan.build(queries, keys, values, am, layer_idx=0, sparse_meta_data=batched)
    attention.mask_for(call)
    reuse = CallPlan.build(queries, keys, values, am, layer_idx=1, sparse_meta_data=batched)
    together = sets(attention.mask_for(reuse))
    for row, length in enumerate(lengths):
        pad = k - length
        alone: dict = {}
        args = (
            queries[row : row + 1],
            keys[row : row + 1, :, pad:],
            values[row : row + 1, :, pad:],
        )
        attention.mask_for(CallPlan.build(*args, layer_idx=0, sparse_meta_data=alone))
        single = sets(
            attention.mask_for(CallPlan.build(*args, layer_idx=1, sparse_meta_data=alone))
        )
        shifted = [[{j - pad for j in r} for r in h] for h in together[row]]
        assert shifted == single[0]


def test_full_budget_is_dense_and_missing_selection_raises() -> None:
    _, masks = run_layers(TidalDecodeMaskerConfig(heavy_size=1.0, reselection_layers=()), 4)
    assert all(m.is_full() for m in masks)
    attention = ResearchAttention(ResearchAttentionConfig([TidalDecodeMaskerConfig(heavy_size=4)]))
    queries, keys, values = (
        torch.randn(1, 4, 1, 8),
        torch.randn(1, 2, 9, 8),
        torch.randn(1, 2, 9, 8),
    )
    with pytest.raises(ValueError, match="no selection from layer 2"):
        attention.mask_for(CallPlan.build(queries, keys, values, layer_idx=3, sparse_meta_data={}))
    with pytest.raises(ValueError, match="layer_idx"):
        attention.mask_for(CallPlan.build(queries, keys, values))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"heavy_size": -1}, "heavy_size"),
        ({"reselection_layers": (1,)}, "reselection_layers"),
        ({"reselection_layers": (9, 5)}, "reselection_layers"),
        ({"sparse_layer_start": -1}, "sparse_layer_start"),
        ({"shared_heads": 1}, "shared_heads"),
    ],
)
def test_bad_configs_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        TidalDecodeMaskerConfig(**kwargs)


def test_round_trip() -> None:
    cfg = TidalDecodeMaskerConfig(
        heavy_size=0.1, sparse_layer_start=1, reselection_layers=(5, 8), shared_heads=True
    )
    again = TidalDecodeMaskerConfig.from_dict(cfg.to_dict())
    assert again == cfg
