"""The CPU row top-k kernel against a naive reference: a stable descending sort per row.

The kernel must return exactly the top ``k`` of each row (ties at the k-th value toward the
lower index, NaN highest) whatever its sampled threshold does, so the cases include rows
built to defeat the sample (every sampled position holds the row's largest value), ties,
NaN, -inf, strided views and the torch.topk fallbacks.
"""

from __future__ import annotations

import threading

import pytest
import torch

from sah_core.attention import cpu_top_k
from sah_core.attention.cpu_top_k import kernel_applies, row_top_k


def naive_top_k(scores: torch.Tensor, k: int) -> list[set[int]]:
    """Per row, the indices of the k best entries: NaN first, then by value, ties by index."""
    chosen = []
    for row in scores.reshape(-1, scores.shape[-1]).tolist():
        order = sorted(
            range(len(row)),
            key=lambda j: (0 if row[j] != row[j] else 1, -row[j] if row[j] == row[j] else 0, j),
        )
        chosen.append(set(order[:k]))
    return chosen


def check(scores: torch.Tensor, k: int) -> None:
    assert kernel_applies(scores, k)  # (row_top_k copies a strided last dim first)
    values, indices = row_top_k(scores, k)
    assert values.shape == (*scores.shape[:-1], k) and indices.dtype == torch.int64
    flat_idx = indices.reshape(-1, k)
    assert [set(r) for r in flat_idx.tolist()] == naive_top_k(scores, k)
    torch.testing.assert_close(values, scores.gather(-1, indices), equal_nan=True)


@pytest.fixture(params=["serial", "parallel"])
def launch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both kernels: the serial one (small problems) and the parallel one (row blocks)."""
    if request.param == "parallel":
        monkeypatch.setattr(cpu_top_k, "PARALLEL_MIN_ELEMENTS", 0)
    return str(request.param)


@pytest.mark.parametrize("length,k", [(64, 8), (257, 12), (1000, 50), (4096, 300), (33, 4)])
def test_random_rows_match_the_sort(length: int, k: int, launch: str) -> None:
    gen = torch.Generator().manual_seed(length)
    check(torch.randn(3, 5, length, generator=gen), k)


def test_a_row_that_defeats_the_sample_falls_back_to_the_whole_row(launch: str) -> None:
    length, k = 640, 70
    row = torch.rand(length) - 1.0  # in [-1, 0)
    step = length // 64
    row[::step] = 5.0  # every sampled entry is the maximum: both cuts keep only those 64
    check(row.expand(4, length).clone(), k)


def test_ties_go_to_the_lower_index() -> None:
    scores = torch.zeros(6, 512)
    scores[:, 100:140] = 1.0  # 40 best, then 472 tied zeros: 10 of them must be 0..9
    _values, indices = row_top_k(scores, 50)
    for row in indices.tolist():
        assert set(row) == set(range(100, 140)) | set(range(10))
    check(torch.randint(0, 3, (4, 800), generator=torch.Generator().manual_seed(1)).float(), 90)


def test_nan_ranks_highest_and_minus_inf_lowest(launch: str) -> None:
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(4, 700, generator=gen)
    scores[:, 650:] = float("-inf")
    scores[0, 3] = float("nan")
    scores[1, 600] = -float("nan")  # a negative NaN ranks highest too, as in torch.topk
    scores[2, :] = float("-inf")
    scores[2, 10] = 0.5
    check(scores, 60)
    _, indices = row_top_k(scores, 60)
    assert 3 in indices[0].tolist() and 600 in indices[1].tolist()


def test_strided_views_are_read_in_place() -> None:
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(2, 4, 16, 900, generator=gen)
    view = base[..., 128:800]  # a last-dim slice, as the prefill reads its free columns
    check(view, 40)
    before = base.clone()
    row_top_k(view, 40)
    assert torch.equal(base, before)  # the scores are only read


def test_every_fp32_cpu_selection_runs_the_kernel_else_torch_topk() -> None:
    # one tie rule whatever the batch: a padded batch and a row alone pick the same keys
    assert kernel_applies(torch.randn(1, 5), 2) and kernel_applies(torch.randn(9, 200), 150)
    check(torch.randn(2, 9)[:, ::2], 3)  # a strided last dim is copied, then selected
    check(torch.randn(3, 40), 39)
    scores = torch.randn(3, 200, dtype=torch.float64)
    assert not kernel_applies(scores, 10) and not kernel_applies(torch.randn(3, 8), 8)
    _, indices = row_top_k(scores, 10)
    assert [set(r) for r in indices.tolist()] == naive_top_k(scores, 10)


def test_a_row_padded_on_the_left_picks_the_same_keys() -> None:
    gen = torch.Generator().manual_seed(5)
    row = torch.randint(0, 4, (1, 300), generator=gen).float()  # many exact ties
    padded = torch.cat([torch.full((1, 37), float("-inf")), row], dim=-1)
    _, alone = row_top_k(row, 60)
    _, batched = row_top_k(torch.cat([padded, torch.randn(3, 337, generator=gen)]), 60)
    assert {j - 37 for j in batched[0].tolist()} == set(alone[0].tolist())


def test_calls_from_several_threads_take_turns(launch: str) -> None:
    scores = [torch.randn(16, 700, generator=torch.Generator().manual_seed(s)) for s in range(6)]
    results: dict[int, list[set[int]]] = {}

    def work(n: int) -> None:
        for _ in range(5):
            results[n] = [set(r) for r in row_top_k(scores[n], 30)[1].tolist()]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n] == naive_top_k(scores[n], 30) for n in range(6))


@pytest.mark.parametrize("use_kernel", [True, False])
def test_into_views_adds_the_offset_and_marks_masked_picks(
    use_kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not use_kernel:
        monkeypatch.setattr(cpu_top_k, "kernel_applies", lambda scores, k: False)
    gen = torch.Generator().manual_seed(4)
    scores = torch.randn(3, 6, 500, generator=gen)
    forbidden = torch.finfo(torch.float32).min / 2
    scores[1, :, 30:] = torch.finfo(torch.float32).min  # row group 1: only 30 allowed keys
    values = torch.full((3, 10, 80), 7.0)
    indices = torch.full((3, 10, 80), 7, dtype=torch.int64)
    cpu_top_k.row_top_k_into(
        scores, 40, values[:, 2:8, 5:45], indices[:, 2:8, 5:45], 100, forbidden
    )
    expected = naive_top_k(scores, 40)
    got_idx = indices[:, 2:8, 5:45].reshape(-1, 40)
    got_val = values[:, 2:8, 5:45].reshape(-1, 40)
    for row, (want, idx, val) in enumerate(zip(expected, got_idx, got_val, strict=True)):
        flat = scores.reshape(-1, 500)[row]
        allowed = {j for j in want if flat[j] > forbidden}
        assert {j - 100 for j in idx.tolist() if j >= 0} == allowed
        assert (idx < 0).sum() == 40 - len(allowed)
        assert torch.equal(val[idx < 0], torch.full(((idx < 0).sum(),), float("-inf")))
        assert torch.equal(val[idx >= 0], flat[idx[idx >= 0] - 100])
    untouched = torch.ones(3, 10, 80, dtype=torch.bool)
    untouched[:, 2:8, 5:45] = False
    assert bool((values[untouched] == 7.0).all()) and bool((indices[untouched] == 7).all())
