"""Quest top-k masker against a naive page-bound reference, plus the shared properties."""

from __future__ import annotations

import math

import naive_refs_b as refs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import Mask, MaskerConfig, ResearchMasker
from sah_core.maskers.quest import QuestTopKMasker, QuestTopKMaskerConfig


def naive_quest_scores(
    queries: torch.Tensor, keys: torch.Tensor, page_size: int, label_bits: int
) -> torch.Tensor:
    """Per-key score = its page's bound sum_d max(q_d min_d, q_d max_d), with plain loops."""
    b, hq, q, _ = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    out = torch.zeros(b, hq, q, k, dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            for page_start in range(0, k, page_size):
                page = keys[bi, hi // group, page_start : page_start + page_size].double()
                low = page.min(dim=0).values
                high = page.max(dim=0).values
                if label_bits < 32:
                    scale = max(float(low.abs().max()), float(high.abs().max()))
                    step = scale / (2 ** (label_bits - 1) - 1)
                    low = torch.floor(low / step + 1e-3) * step
                    high = torch.ceil(high / step - 1e-3) * step
                for qi in range(q):
                    query = queries[bi, hi, qi].double()
                    bound = float(torch.maximum(query * low, query * high).sum())
                    out[bi, hi, qi, page_start : page_start + page_size] = bound
    return out


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="page_size"):
        QuestTopKMaskerConfig(heavy_size=4, page_size=0)
    with pytest.raises(ValueError, match="label_bits"):
        QuestTopKMaskerConfig(heavy_size=4, label_bits=1)
    with pytest.raises(ValueError, match="heavy_size"):
        QuestTopKMaskerConfig(heavy_size=-1)
    with pytest.raises(ValueError, match="heavy_size"):
        QuestTopKMaskerConfig(heavy_size=1.5)


def test_config_round_trip_and_registry() -> None:
    config = QuestTopKMaskerConfig(heavy_size=0.25, page_size=4, label_bits=8)
    again = MaskerConfig.from_dict(config.to_dict())
    assert again == config
    assert isinstance(ResearchMasker.create_from_config(again), QuestTopKMasker)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 1000),
    hkv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2]),
    q=st.integers(1, 5),
    k=st.integers(5, 23),
    page_size=st.sampled_from([1, 3, 4]),
    heavy=st.integers(1, 9),
    label_bits=st.sampled_from([32, 6]),
    chunk=st.sampled_from([None, 2]),
)
def test_matches_naive_reference(
    seed: int,
    hkv: int,
    group: int,
    q: int,
    k: int,
    page_size: int,
    heavy: int,
    label_bits: int,
    chunk: int | None,
) -> None:
    queries, keys, values = refs.make_qkv(seed, 2, hkv * group, hkv, q, k, 6)
    attn = refs.causal_mask(2, q, k)
    masker = QuestTopKMasker(
        QuestTopKMaskerConfig(heavy_size=heavy, page_size=page_size, label_bits=label_bits)
    )
    mask = refs.call_masker(masker, queries, keys, values, attn, {}, query_chunk_size=chunk)
    ref = naive_quest_scores(queries, keys, page_size, label_bits)
    allowed = refs.allowed_keys(attn, ref.shape)
    # the authors' page rule: the budget rounded down to whole pages, at least three
    pages = max(3, heavy // page_size) if heavy > 0 else 0
    if heavy >= k or pages * page_size >= k:
        assert mask.is_full()
        return
    check_whole_pages(refs.selected(mask), ref, allowed, page_size, pages)
    # the masker's own per-key scores equal the reference
    call = refs.plan(queries, keys, values, attn)
    mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
    torch.testing.assert_close(mine.double(), ref, rtol=1e-4, atol=1e-4)


def check_whole_pages(
    chosen: torch.Tensor, ref: torch.Tensor, allowed: torch.Tensor, page_size: int, pages: int
) -> None:
    """Row by row: ``chosen`` is every allowed key of a set of ``pages`` candidate pages
    (pages with an allowed key) whose bounds are the highest (ties either way)."""
    b, h, q, k = chosen.shape
    for bi in range(b):
        for hi in range(h):
            for qi in range(q):
                starts = range(0, k, page_size)
                candidates = [
                    s for s in starts if bool(allowed[bi, hi, qi, s : s + page_size].any())
                ]
                taken = [s for s in starts if bool(chosen[bi, hi, qi, s : s + page_size].any())]
                assert len(taken) == min(pages, len(candidates))
                for s in taken:  # whole pages: every allowed key of a taken page
                    page_allowed = allowed[bi, hi, qi, s : s + page_size]
                    assert torch.equal(chosen[bi, hi, qi, s : s + page_size], page_allowed)
                left = [s for s in candidates if s not in taken]
                if taken and left:
                    low = min(float(ref[bi, hi, qi, s]) for s in taken)
                    high = max(float(ref[bi, hi, qi, s]) for s in left)
                    assert low >= high - 1e-4 * max(1.0, abs(low), abs(high))


@pytest.mark.parametrize(("heavy", "keys_taken"), [(19, 16), (16, 16), (5, 12), (1, 12)])
def test_budget_rounds_down_to_whole_pages_and_takes_at_least_three(
    heavy: int, keys_taken: int
) -> None:
    """Pages of 4 keys: 19 or 16 tokens buy four whole pages, 5 or 1 token the minimum of
    three pages (the authors' ``max(3, budget // page_size)``); a page is never cut."""
    queries, keys, values = refs.make_qkv(4, 1, 2, 1, 1, 40, 8)
    masker = QuestTopKMasker(QuestTopKMaskerConfig(heavy_size=heavy, page_size=4))
    counts = refs.call_masker(masker, queries, keys, values).row_counts()
    assert bool((counts == keys_taken).all())


def test_pages_covered_by_the_previous_mask_are_not_spent() -> None:
    """A sink that covers page 0 leaves the page budget to other pages; a page the sink
    only partly covers adds its remaining keys."""
    queries = torch.zeros(1, 1, 1, 4)
    queries[..., 0] = 1.0
    keys = torch.randn(1, 1, 32, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    keys[0, 0, 1, 0] = 9.0  # page 0 has the best bound ...
    keys[0, 0, 5, 0] = 5.0  # ... then pages 1, 3 and 5
    keys[0, 0, 13, 0] = 4.0
    keys[0, 0, 21, 0] = 3.0
    sink = Mask.from_index(torch.arange(6).view(1, 1, 1, 6), None, (1, 1, 1, 32))
    masker = QuestTopKMasker(QuestTopKMaskerConfig(heavy_size=12, page_size=4))
    mask = refs.call_masker(masker, queries, keys, keys, previous=sink)
    chosen = refs.selected(mask)[0, 0, 0].nonzero().flatten().tolist()
    # sink 0..5, then the rest of page 1, then pages 3 and 5 (three pages bought)
    assert chosen == [0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]


def test_best_pages_are_taken_whole() -> None:
    # one key aligned with the query lifts its whole page; budget = one page
    queries = torch.zeros(1, 1, 1, 4)
    queries[..., 0] = 1.0
    keys = torch.randn(1, 1, 32, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    keys[0, 0, 9, 0] = 5.0
    keys[0, 0, 17, 0] = 5.0
    keys[0, 0, 30, 0] = 5.0
    masker = QuestTopKMasker(QuestTopKMaskerConfig(heavy_size=12, page_size=4))
    mask = refs.call_masker(masker, queries, keys, keys)
    chosen = refs.selected(mask)[0, 0, 0].nonzero().flatten().tolist()
    assert chosen == [8, 9, 10, 11, 16, 17, 18, 19, 28, 29, 30, 31]


def test_common_properties() -> None:
    refs.check_common_properties(
        lambda: QuestTopKMasker(QuestTopKMaskerConfig(heavy_size=5, page_size=3)),
        QuestTopKMaskerConfig(heavy_size=1.0, page_size=3),
        tied_scores=True,
    )


@pytest.mark.parametrize("label_bits", [32, 4])
def test_state_reuse_matches_recompute(label_bits: int) -> None:
    refs.check_state_reuse(
        lambda: QuestTopKMasker(
            QuestTopKMaskerConfig(heavy_size=6, page_size=4, label_bits=label_bits)
        )
    )


def test_quantised_bound_still_bounds_every_key() -> None:
    queries, keys, _ = refs.make_qkv(3, 1, 2, 2, 3, 16, 8)
    scores = naive_quest_scores(queries, keys, 4, 3)
    exact = torch.einsum("bhqd,bhkd->bhqk", queries.double(), keys.double())
    assert bool((scores >= exact - 1e-2).all())
    assert math.isfinite(float(scores.sum()))


@pytest.mark.parametrize("heavy", [6, 0.3])
def test_batched_with_padding_equals_one_by_one(heavy: int | float) -> None:
    refs.check_batch_safe(
        lambda: QuestTopKMasker(QuestTopKMaskerConfig(heavy_size=heavy, page_size=4))
    )


@pytest.mark.parametrize("shared_pages", [True, False])
def test_page_bounds_merge_matches_a_loop_over_the_keys(shared_pages: bool) -> None:
    """The page minima/maxima folded in place (the CPU kernel), against a loop over the keys;
    a NaN key makes its page's bound NaN; other dtypes take the torch scatter path."""
    from sah_core.maskers.quest import merge_page_bounds

    gen = torch.Generator().manual_seed(4)
    b, h, n, d, slots = 2, 3, 23, 5, 7
    keys = torch.randn(b, h, n, d, generator=gen)
    keys[1, 2, 4, 3] = float("nan")
    pages = torch.randint(0, slots, (1 if shared_pages else b, n), generator=gen)
    low0 = torch.randn(b, h, slots, d, generator=gen) + 1.5
    high0 = torch.randn(b, h, slots, d, generator=gen) - 1.5
    low, high = low0.clone(), high0.clone()
    merge_page_bounds(low, high, keys, pages)
    expected_low, expected_high = low0.clone(), high0.clone()
    for bi in range(b):
        for hi in range(h):
            for j in range(n):
                p = int(pages[0 if shared_pages else bi, j])
                for di in range(d):
                    x = float(keys[bi, hi, j, di])
                    if math.isnan(x):
                        expected_low[bi, hi, p, di] = x
                        expected_high[bi, hi, p, di] = x
                    elif not math.isnan(float(expected_low[bi, hi, p, di])):
                        expected_low[bi, hi, p, di] = min(float(expected_low[bi, hi, p, di]), x)
                        expected_high[bi, hi, p, di] = max(float(expected_high[bi, hi, p, di]), x)
    assert torch.equal(low.isnan(), expected_low.isnan())
    assert torch.allclose(low, expected_low, equal_nan=True)
    assert torch.allclose(high, expected_high, equal_nan=True)
    # bf16 keys take the torch scatter path: the same bounds as the kernel on those values
    half = keys.to(torch.bfloat16)
    low_t, high_t, low_k, high_k = low0.clone(), high0.clone(), low0.clone(), high0.clone()
    merge_page_bounds(low_t, high_t, half, pages)
    merge_page_bounds(low_k, high_k, half.float(), pages)
    assert torch.equal(low_t.nan_to_num(7.0), low_k.nan_to_num(7.0))
    assert torch.equal(high_t.nan_to_num(7.0), high_k.nan_to_num(7.0))


@pytest.mark.parametrize("shared_slots", [True, False])
def test_page_selection_kernels_match_a_loop_over_the_keys(shared_slots: bool) -> None:
    """The CPU kernels of the page selection against loops: a page is a candidate when it
    holds an eligible key; the kept keys are the eligible keys of the chosen pages
    (``ok``), ascending, -1 padded to the widest row; an expanded ``eligible`` is read as is."""
    from sah_core.maskers._page_select_numba import candidate_pages, chosen_page_keys

    gen = torch.Generator().manual_seed(11)
    b, h, q, k, count, take = 2, 3, 4, 29, 6, 3
    slots = torch.randint(0, count + 1, (1 if shared_slots else b, k), generator=gen)
    for eligible in (
        torch.rand(b, h, q, k, generator=gen) < 0.6,
        (torch.rand(k, generator=gen) < 0.5).expand(b, h, q, k),
    ):
        candidate = torch.zeros(b, h, q, count + 1, dtype=torch.bool)
        candidate_pages(eligible.numpy(), slots.numpy(), candidate.numpy())
        order = torch.stack([torch.randperm(count, generator=gen)[:take] for _ in range(b * h * q)])
        order = order.view(b, h, q, take)
        ok = torch.rand(b, h, q, take, generator=gen) < 0.7
        packed = chosen_page_keys(
            eligible.numpy(), slots.numpy(), order.numpy(), ok.numpy(), count + 1
        )
        rows = []
        for bi in range(b):
            page_of = slots[0 if shared_slots else bi].tolist()
            for hi in range(h):
                for qi in range(q):
                    row = eligible[bi, hi, qi].tolist()
                    pages = {page_of[j] for j in range(k) if row[j]}
                    for p in range(count + 1):
                        assert bool(candidate[bi, hi, qi, p]) == (p in pages)
                    picks = zip(order[bi, hi, qi].tolist(), ok[bi, hi, qi].tolist(), strict=True)
                    chosen = {p for p, fine in picks if fine}
                    rows.append([j for j in range(k) if row[j] and page_of[j] in chosen])
        width = max(len(r) for r in rows)
        expected = torch.tensor([r + [-1] * (width - len(r)) for r in rows]).view(b, h, q, width)
        assert torch.equal(torch.from_numpy(packed), expected)
