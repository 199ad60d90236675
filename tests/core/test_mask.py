"""Mask value type: representations, conversions, density, union semantics, immutability."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import Mask

SHAPE = (1, 2, 3, 6)


def random_index_mask(seed: int, shape=SHAPE, width: int = 4, dup: bool = True) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    b, h, q, k = shape
    idx = torch.randint(-1, k, (b, h, q, width), generator=gen)
    if not dup:
        idx = torch.stack([torch.randperm(k, generator=gen)[:width] for _ in range(b * h * q)])
        idx = idx.view(b, h, q, width)
    w = torch.rand(b, h, q, width, generator=gen) * (idx >= 0)
    return Mask.from_index(idx, w, shape)


def naive_dense_from_index(idx: torch.Tensor, w: torch.Tensor, shape) -> torch.Tensor:
    out = torch.zeros(shape)
    b, h, q, _ = shape
    for bi in range(b):
        for hi in range(h):
            for qi in range(q):
                for j, x in zip(idx[bi, hi, qi].tolist(), w[bi, hi, qi].tolist(), strict=True):
                    if j >= 0:
                        out[bi, hi, qi, j] = min(1.0, float(out[bi, hi, qi, j]) + x)
    return out


def test_full_and_empty() -> None:
    full, empty = Mask.full(SHAPE), Mask.empty(SHAPE)
    assert full.is_full() and not full.is_empty() and full.get_density() == 1.0
    assert empty.is_empty() and not empty.is_full() and empty.get_density() == 0.0
    assert torch.equal(full.get_dense_mask(), torch.ones(SHAPE))
    assert torch.equal(empty.get_dense_mask(), torch.zeros(SHAPE))
    idx, _ = full.get_index_form()
    assert idx.shape == (*SHAPE[:3], 6) and torch.equal(idx[0, 1, 2], torch.arange(6))
    assert empty.get_index_form()[0].shape == (*SHAPE[:3], 0)
    assert full.shape == SHAPE


def test_index_duplicates_fold_and_density() -> None:
    idx = torch.tensor([[[[1, 3, 1, -1]]]])
    w = torch.tensor([[[[0.25, 1.0, 0.5, 0.0]]]])
    m = Mask.from_index(idx, w, (1, 1, 1, 5))
    assert torch.allclose(m.get_dense_mask(), torch.tensor([[[[0, 0.75, 0, 1.0, 0]]]]))
    assert m.get_density() == pytest.approx(2 / 5)  # duplicate index counted once


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_index_to_dense_matches_naive(seed: int) -> None:
    m = random_index_mask(seed)
    _, w = m.get_index_form()
    gen = torch.Generator().manual_seed(seed)
    raw_idx = torch.randint(-1, SHAPE[3], (*SHAPE[:3], 4), generator=gen)
    raw_w = torch.rand(*SHAPE[:3], 4, generator=gen) * (raw_idx >= 0)
    assert torch.allclose(m.get_dense_mask(), naive_dense_from_index(raw_idx, raw_w, SHAPE))
    # the index form round-trips through dense and back
    again = Mask.from_dense(m.get_dense_mask())
    assert torch.allclose(again.get_dense_mask(), m.get_dense_mask())
    assert m.get_density() == pytest.approx(float((m.get_dense_mask() > 0).float().mean()))
    assert bool((w >= 0).all() and (w <= 1).all())


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.booleans())
def test_union_index_index_equals_dense_dense(seed_a: int, seed_b: int, disjointish: bool) -> None:
    a = random_index_mask(seed_a, dup=not disjointish)
    b = random_index_mask(seed_b, dup=not disjointish)
    merged = a.merge(b)
    assert merged.representation == "index"  # never densified
    expected = (a.get_dense_mask() + b.get_dense_mask()).clamp(0, 1)
    assert torch.allclose(merged.get_dense_mask(), expected)
    dense_merged = Mask.from_dense(a.get_dense_mask()).merge(Mask.from_dense(b.get_dense_mask()))
    assert torch.allclose(dense_merged.get_dense_mask(), expected)
    mixed = a.merge(Mask.from_dense(b.get_dense_mask()))
    assert torch.allclose(mixed.get_dense_mask(), expected)
    # union is commutative
    assert torch.allclose(b.merge(a).get_dense_mask(), expected)


def test_merge_with_full_and_empty() -> None:
    a = random_index_mask(3)
    assert a.merge(Mask.full(SHAPE)).is_full()
    assert Mask.full(SHAPE).merge(a).is_full()
    assert torch.equal(a.merge(Mask.empty(SHAPE)).get_dense_mask(), a.get_dense_mask())
    assert torch.equal(Mask.empty(SHAPE).merge(a).get_dense_mask(), a.get_dense_mask())


def test_merge_disjoint_ranges_skip_sort_but_stay_correct() -> None:
    shape = (1, 1, 2, 10)
    a = Mask.from_index(torch.tensor([[[[0, 1], [0, 1]]]]), torch.ones(1, 1, 2, 2), shape)
    b = Mask.from_index(
        torch.tensor([[[[8, 9], [7, -1]]]]), torch.tensor([[[[1, 0.5], [1, 0]]]]), shape
    )
    expected = a.get_dense_mask() + b.get_dense_mask()
    assert torch.allclose(a.merge(b).get_dense_mask(), expected)


def test_merge_of_head_broadcast_rows_finds_an_overlap_in_one_batch_row() -> None:
    """Indices expanded over heads (a fixed pattern's layout) in two batch rows: ranges
    apart in row 0, one shared key in row 1: the union counts that key once."""
    shape = (2, 3, 1, 12)
    a_rows = torch.tensor([[0, 1, 2], [0, 1, 5]]).view(2, 1, 1, 3).expand(2, 3, 1, 3)
    b_rows = torch.tensor([[8, 9, -1], [5, 6, 7]]).view(2, 1, 1, 3).expand(2, 3, 1, 3)
    a = Mask.from_index(a_rows, None, shape, assume_unique=True, validate=False)
    b = Mask.from_index(b_rows, None, shape, assume_unique=True, validate=False)
    expected = (a.get_dense_mask() + b.get_dense_mask()).clamp(0, 1)
    merged = a.merge(b)
    assert torch.equal(merged.get_dense_mask(), expected)
    assert int((merged.get_index_form()[0] == 5).sum()) == 3  # key 5 once per head


def test_values_are_immutable() -> None:
    idx = torch.tensor([[[[0, 2, -1]]]])
    w = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    a = Mask.from_index(idx, w, (1, 1, 1, 4))
    b = Mask.from_index(torch.tensor([[[[2, 3]]]]), torch.tensor([[[[1.0, 1.0]]]]), (1, 1, 1, 4))
    before_a, before_b = a.get_dense_mask(), b.get_dense_mask()
    a.merge(b)
    b.merge(a)
    dense = a.get_dense_mask()
    dense.fill_(0.3)  # a returned tensor is a new tensor
    got_idx, got_w = a.get_index_form()
    got_idx.fill_(0)
    got_w.fill_(0)
    assert torch.equal(a.get_dense_mask(), before_a) and torch.equal(b.get_dense_mask(), before_b)
    d = Mask.from_dense(before_a.clone())
    d.get_dense_mask().fill_(1.0)
    d.merge(b)
    assert torch.equal(d.get_dense_mask(), before_a)


def test_query_slice() -> None:
    m = random_index_mask(7)
    part = m.query_slice(1, 3)
    assert part.shape == (1, 2, 2, 6)
    assert torch.equal(part.get_dense_mask(), m.get_dense_mask()[:, :, 1:3])
    d = Mask.from_dense(m.get_dense_mask())
    assert torch.equal(d.query_slice(0, 1).get_dense_mask(), m.get_dense_mask()[:, :, :1])
    with pytest.raises(ValueError, match="query slice"):
        m.query_slice(2, 9)


def test_is_full_is_empty_inspect_contents() -> None:
    shape = (1, 1, 1, 3)
    assert Mask.from_dense(torch.ones(shape)).is_full()
    assert Mask.from_dense(torch.zeros(shape)).is_empty()
    assert Mask.from_index(torch.tensor([[[[2, 0, 1]]]]), torch.ones(shape), shape).is_full()
    assert Mask.from_index(torch.full(shape, -1), torch.zeros(shape), shape).is_empty()
    assert not Mask.from_index(
        torch.tensor([[[[2, 0, 1]]]]), torch.full(shape, 0.5), shape
    ).is_full()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Mask.full((1, 2, 3)), "shape"),
        (lambda: Mask.from_dense(torch.full((1, 1, 1, 2), 1.5)), "weights must lie"),
        (lambda: Mask.from_dense(torch.ones(1, 1, 1, 2, dtype=torch.int64)), "float dtype"),
        (
            lambda: Mask.from_index(torch.tensor([[[[5]]]]), torch.ones(1, 1, 1, 1), (1, 1, 1, 4)),
            "indices in",
        ),
        (
            lambda: Mask.from_index(
                torch.tensor([[[[1]]]]), torch.full((1, 1, 1, 1), -0.5), (1, 1, 1, 4)
            ),
            "weights in",
        ),
        (
            lambda: Mask.from_index(torch.tensor([[[[1]]]]), torch.ones(1, 1, 1, 2), (1, 1, 1, 4)),
            "weights.shape",
        ),
        (lambda: Mask.full(SHAPE).merge(Mask.full((1, 1, 1, 1))), "other.shape"),
    ],
)
def test_invalid_input_raises(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_row_counts() -> None:
    m = Mask.from_index(
        torch.tensor([[[[0, 1, -1], [2, -1, -1]]]]),
        torch.tensor([[[[1.0, 0.5, 0.0], [1.0, 0.0, 0.0]]]]),
        (1, 1, 2, 4),
    )
    assert m.row_counts().tolist() == [[[2, 1]]]
    assert Mask.full((1, 1, 2, 4)).row_counts().tolist() == [[[4, 4]]]


def test_binary_index_masks() -> None:
    shape = (1, 1, 2, 6)
    a = Mask.from_index(torch.tensor([[[[0, 3, 3], [5, -1, 1]]]]), None, shape)
    assert a.is_binary() and a.representation == "index"
    expected = torch.tensor([[[[1.0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1]]]])
    assert torch.equal(a.get_dense_mask(), expected)
    assert a.get_density() == pytest.approx(4 / 12)
    _, w = a.get_index_form()
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    b = Mask.from_index(torch.tensor([[[[3, 4], [2, -1]]]]), None, shape)
    union = a.merge(b)
    assert union.is_binary()
    assert torch.equal(union.get_dense_mask(), (expected + b.get_dense_mask()).clamp(0, 1))
    weighted = Mask.from_index(
        torch.tensor([[[[4], [0]]]]), torch.tensor([[[[0.5], [0.25]]]]), shape
    )
    mixed = a.merge(weighted)
    assert not mixed.is_binary()
    assert torch.allclose(
        mixed.get_dense_mask(), (expected + weighted.get_dense_mask()).clamp(0, 1)
    )
    with pytest.raises(ValueError, match="index_view"):
        Mask.full(shape).index_view()
