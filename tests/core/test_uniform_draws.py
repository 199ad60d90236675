"""Uniform draws without replacement (vAttention's samples) against their definition.

A draw of ``n`` keys from a population of ``N`` must be a uniform random ``n``-subset: every
subset equally likely (so every key is kept with probability ``n / N``), exactly ``n``
distinct population keys per row, fixed by ``torch.manual_seed``. The subset frequencies are
checked with a chi-square bound on many independent rows.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sah_core.maskers import uniform_draws
from sah_core.maskers.uniform_draws import draw_from_range, draw_without_replacement

CPU = torch.device("cpu")


def rows_as_sets(drawn: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(j for j in row if j >= 0) for row in drawn.reshape(-1, drawn.shape[-1]).tolist()]


def chi_square(observed: list[int], expected: float) -> float:
    return sum((o - expected) ** 2 / expected for o in observed)


def chi_square_bound(cells: int) -> float:
    """A bound the statistic exceeds with probability ~1e-6 (Wilson-Hilferty, z = 4.75)."""
    dof = cells - 1
    return dof * (1 - 2 / (9 * dof) + 4.75 * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize("population_size,count", [(5, 2), (6, 3), (7, 6)])
def test_every_subset_is_equally_likely(population_size: int, count: int) -> None:
    rows = 30_000
    torch.manual_seed(11)
    drawn = draw_from_range((rows,), 3, 3 + population_size, count, CPU)
    seen: dict[tuple[int, ...], int] = {}
    for subset in rows_as_sets(drawn):
        seen[subset] = seen.get(subset, 0) + 1
    subsets = list(itertools.combinations(range(3, 3 + population_size), count))
    assert set(seen) == set(subsets)
    observed = [seen[s] for s in subsets]
    assert chi_square(observed, rows / len(subsets)) < chi_square_bound(len(subsets))


def test_each_key_is_kept_with_probability_n_over_N_in_a_scattered_population() -> None:
    rows, key_len = 4_000, 40
    gen = torch.Generator().manual_seed(3)
    one_row = torch.rand(key_len, generator=gen) < 0.6
    population = one_row.expand(rows, key_len)
    members = one_row.nonzero().flatten().tolist()
    count = len(members) // 3
    torch.manual_seed(5)
    drawn = draw_without_replacement(population, torch.full((rows, 1), float(count)))
    hits = torch.zeros(key_len, dtype=torch.int64)
    for subset in rows_as_sets(drawn):
        assert len(subset) == count and set(subset) <= set(members)
        hits[list(subset)] += 1
    assert int(hits[~one_row].sum()) == 0
    observed = hits[one_row].tolist()
    # each key's count is Binomial(rows, count / N): within 5 standard deviations
    p = count / len(members)
    spread = 5 * math.sqrt(rows * p * (1 - p))
    assert all(abs(o - rows * p) < spread for o in observed)


def test_rows_keep_their_own_counts_ascending_then_padding() -> None:
    population = torch.zeros(2, 3, 50, dtype=torch.bool)
    population[0, :, 10:40] = True
    population[1, :, ::3] = True
    counts = torch.tensor([[0.0, 4.0, 30.0], [2.0, 99.0, 17.0]]).unsqueeze(-1)
    drawn = draw_without_replacement(population, counts)
    assert drawn.shape == (2, 3, 30) and drawn.dtype == torch.int64
    wanted = [0, 4, 30, 2, 17, 17]
    for (b, h), want in zip(itertools.product(range(2), range(3)), wanted, strict=True):
        row = drawn[b, h].tolist()
        keys = [j for j in row if j >= 0]
        assert len(keys) == want == len(set(keys))  # a count above N is cut to N
        assert row == keys + [-1] * (30 - want) and keys == sorted(keys)
        assert all(bool(population[b, h, j]) for j in keys)


def test_a_range_draws_the_keys_of_the_same_population() -> None:
    counts = torch.tensor([7.0, 0.0, 93.0, 50.0]).view(2, 2, 1)
    torch.manual_seed(2)
    ranged = draw_from_range((2, 2), 17, 110, counts, CPU)
    population = torch.zeros(2, 2, 128, dtype=torch.bool)
    population[..., 17:110] = True
    torch.manual_seed(2)
    assert torch.equal(ranged, draw_without_replacement(population, counts))


def test_the_seed_fixes_the_keys_and_rows_differ() -> None:
    torch.manual_seed(4)
    first = draw_from_range((8,), 0, 1000, 20, CPU)
    torch.manual_seed(4)
    again = draw_from_range((8,), 0, 1000, 20, CPU)
    later = draw_from_range((8,), 0, 1000, 20, CPU)
    assert torch.equal(first, again)
    assert not torch.equal(first, later)
    assert len(set(rows_as_sets(first))) == 8


def test_empty_draws() -> None:
    assert draw_from_range((3,), 5, 5, 4, CPU).shape == (3, 0)
    assert draw_from_range((2, 1), 0, 9, 0, CPU).shape == (2, 1, 0)
    nothing = torch.zeros(2, 6, dtype=torch.bool)
    assert draw_without_replacement(nothing, torch.full((2, 1), 3.0)).shape == (2, 0)


def test_the_torch_formulation_of_other_devices_draws_a_valid_sample() -> None:
    """The path CUDA takes, run on the CPU: same contract (keys of the population, the
    asked count, -1 after), keys in draw order."""
    population = torch.zeros(3, 40, dtype=torch.bool)
    population[:, 5:30] = True
    population[2, 7] = False
    counts = torch.tensor([[3.0], [25.0], [30.0]])
    drawn = uniform_draws._torch_draw(population, counts)
    assert drawn.shape == (3, 25)
    for row, want in zip(drawn.tolist(), [3, 25, 24], strict=True):
        keys = [j for j in row if j >= 0]
        assert len(keys) == want == len(set(keys)) and row[want:] == [-1] * (25 - want)
        assert all(5 <= j < 30 for j in keys)


def test_population_size_counts_each_row() -> None:
    """The per-row population counts (the CPU kernel) against a count over each row's
    entries, for a contiguous and an expanded population."""
    from sah_core.maskers.uniform_draws import population_size

    gen = torch.Generator().manual_seed(1)
    for population in (
        torch.rand(2, 3, 4, 37, generator=gen) < 0.4,
        (torch.rand(2, 1, 1, 37, generator=gen) < 0.6).expand(2, 3, 4, 37),
    ):
        sizes = population_size(population)
        assert sizes.shape == (2, 3, 4, 1) and sizes.dtype == torch.float32
        for index in itertools.product(range(2), range(3), range(4)):
            assert float(sizes[index]) == sum(bool(x) for x in population[index].tolist())
