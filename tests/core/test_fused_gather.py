"""The fused CPU gather attention against the fp64 row loop of importance-weighted attention.

Cases: GQA, -1 padding, importance weights (and weight 0), an additive attention mask with
forbidden keys, sink logits, a row that attends nothing, NaN propagation, a cache view into
a larger buffer, and the two inputs that replace reading the keys (a masker's scores, the
logits of every entry).
"""

from __future__ import annotations

import pytest
import torch

from sah_core.attention import index_form
from sah_core.attention.fused_gather import fused_gather_applies, fused_gather_attention

MIN = torch.finfo(torch.float32).min


def dense_weights(indices: torch.Tensor, weights: torch.Tensor | None, k: int) -> torch.Tensor:
    dense = torch.zeros(*indices.shape[:3], k + 1)
    w = torch.ones(indices.shape) if weights is None else weights
    dense.scatter_add_(-1, torch.where(indices >= 0, indices, k), w)
    return dense[..., :k]


def inputs(b=2, hq=6, hkv=2, q=2, k=30, d=8, width=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    queries = torch.randn(b, hq, q, d, generator=gen)
    keys = torch.randn(b, hkv, k, d, generator=gen)
    values = torch.randn(b, hkv, k, d, generator=gen)
    rows = [torch.randperm(k, generator=gen)[:width] for _ in range(b * hq * q)]
    indices = torch.stack(rows).view(b, hq, q, width)
    indices[0, 1, 0, 3] = -1
    indices[-1, -1, -1, :2] = -1
    weights = torch.rand(b, hq, q, width, generator=gen) * 0.9 + 0.1
    weights = torch.where(indices >= 0, weights, 0.0)
    weights[-1, 0, 0, 4] = 0.0  # weight 0: not attended
    return queries, keys, values, indices, weights, gen


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("sink", [False, True])
def test_matches_the_row_loop(helpers, weighted: bool, masked: bool, sink: bool) -> None:
    queries, keys, values, indices, weights, gen = inputs()
    w = weights if weighted else None
    k = keys.shape[2]
    mask = None
    if masked:
        mask = torch.randn(2, 1, 2, k, generator=gen)
        mask[0, 0, 1, ::3] = MIN
        mask[1, 0, 0, 5:] = float("-inf")
    s_aux = torch.randn(6, generator=gen) if sink else None
    assert fused_gather_applies(queries, keys, values, indices, 0.0)
    got = fused_gather_attention(
        queries, keys, values, indices, w, scaling=0.4, attention_mask=mask, s_aux=s_aux
    )
    expected = helpers.naive_attention(
        queries, keys, values, dense_weights(indices, w, k), 0.4, mask, s_aux
    )
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_nothing_attended_gives_zero_and_nan_propagates() -> None:
    queries, keys, values, indices, _, _ = inputs(b=1, q=1)
    indices[0, 2, 0] = -1  # row attends nothing
    queries[0, 4, 0, 1] = float("nan")
    got = fused_gather_attention(queries, keys, values, indices, None, scaling=0.5)
    assert torch.equal(got[0, 2, 0], torch.zeros(8))
    assert bool(got[0, 4, 0].isnan().all())
    assert bool(got[0, [0, 1, 3, 5]].isfinite().all())


def test_cache_views_scores_and_entry_logits_give_the_same_output(helpers) -> None:
    queries, keys, values, indices, weights, gen = inputs()
    buffer = torch.randn(2, 2, 48, 8, generator=gen)
    buffer[:, :, :30] = keys
    key_view = buffer[:, :, :30]  # rows of a larger preallocated cache
    assert not key_view.is_contiguous()
    value_buffer = torch.randn(2, 2, 48, 8, generator=gen)
    value_buffer[:, :, :30] = values
    value_view = value_buffer[:, :, :30]
    expected = helpers.naive_attention(
        queries, keys, values, dense_weights(indices, weights, 30), 0.3
    )
    from_view = fused_gather_attention(queries, key_view, value_view, indices, weights, scaling=0.3)
    assert torch.allclose(from_view.double(), expected, atol=1e-5)
    group = torch.arange(6) // 3
    scores = torch.einsum("bhqd,bhkd->bhqk", queries, keys[:, group]) * 0.3
    from_scores = fused_gather_attention(
        queries, keys * float("nan"), values, indices, weights, scaling=0.3, scores=scores
    )
    assert torch.allclose(from_scores.double(), expected, atol=1e-5)
    entry = scores.gather(-1, indices.clamp(min=0)).masked_fill(indices < 0, float("-inf"))
    from_entries = fused_gather_attention(
        queries, keys * float("nan"), values, indices, weights, scaling=0.3, slot_logits=entry
    )
    assert torch.allclose(from_entries.double(), expected, atol=1e-5)


def test_the_reference_gather_strategy_equals_its_torch_ops(monkeypatch) -> None:
    """index_form's gather strategy takes the kernel on the CPU; the torch ops it replaces
    give the same output."""
    queries, keys, values, indices, weights, _ = inputs(k=200)
    fused, name = index_form.index_attention_reference_named(
        queries, keys, values, indices, weights, scaling=0.3
    )
    assert name == "reference/gather-fused"
    monkeypatch.setattr(index_form, "fused_gather_applies", lambda *args: False)
    plain, name = index_form.index_attention_reference_named(
        queries, keys, values, indices, weights, scaling=0.3
    )
    assert name == "reference/gather"
    assert torch.allclose(fused, plain, atol=1e-6)


def test_other_inputs_take_the_torch_ops() -> None:
    queries, keys, values, indices, _, _ = inputs()
    assert not fused_gather_applies(queries.double(), keys.double(), values.double(), indices, 0)
    assert not fused_gather_applies(queries, keys, values, indices, 0.1)  # dropout
    grad = queries.clone().requires_grad_(True)
    assert not fused_gather_applies(grad, keys, values, indices, 0.0)
    long_rows = torch.zeros(1, 1, 4096, 512, dtype=torch.int64)  # prefill-sized per head
    assert not fused_gather_applies(
        queries[:1, :1, :1].expand(1, 1, 4096, 8), keys, values, long_rows, 0
    )


@pytest.mark.parametrize("entry_logits", [False, True])
def test_rows_split_over_threads_equal_the_serial_kernel(monkeypatch, entry_logits: bool) -> None:
    """Above the parallel threshold the query rows are cut into blocks over torch's threads;
    each row computes exactly as in the serial kernel (bit for bit)."""
    from sah_core.attention import fused_gather

    queries, keys, values, indices, weights, gen = inputs(b=2, hq=6, hkv=2, q=9, k=40)
    mask = torch.randn(2, 1, 9, 40, generator=gen)
    s_aux = torch.randn(6, generator=gen)
    extra: dict[str, torch.Tensor] = {"attention_mask": mask, "s_aux": s_aux}
    if entry_logits:
        group = torch.arange(6) // 3
        scores = torch.einsum("bhqd,bhkd->bhqk", queries, keys[:, group]) * 0.3 + mask
        entry = scores.gather(-1, indices.clamp(min=0)).masked_fill(indices < 0, float("-inf"))
        extra = {"slot_logits": entry, "s_aux": s_aux}

    def run(threshold: int) -> torch.Tensor:
        monkeypatch.setattr(fused_gather, "FUSED_PARALLEL_MIN_WORK", threshold)
        return fused_gather_attention(queries, keys, values, indices, weights, scaling=0.3, **extra)

    serial, parallel = run(1 << 40), run(0)
    assert torch.equal(serial, parallel)


def test_prefill_with_entry_logits_takes_the_kernel_at_any_size(monkeypatch) -> None:
    """With the entries' logits given (a prefill after an exact top-k), the kernel runs for
    prefill-sized calls when the index is sparse enough, and equals the torch ops."""
    gen = torch.Generator().manual_seed(3)
    b, hq, hkv, q, k, d, width = 1, 4, 2, 300, 300, 128, 30
    queries = torch.randn(b, hq, q, d, generator=gen)
    keys = torch.randn(b, hkv, k, d, generator=gen)
    values = torch.randn(b, hkv, k, d, generator=gen)
    # each row i attends `width` keys among 0..i (causal), -1 where fewer exist
    indices = torch.full((b, hq, q, width), -1, dtype=torch.int64)
    for i in range(q):
        n = min(width, i + 1)
        indices[:, :, i, :n] = torch.randperm(i + 1, generator=gen)[:n]
    logits = torch.randn(b, hq, q, width, generator=gen).masked_fill(indices < 0, float("-inf"))
    assert not fused_gather_applies(queries, keys, values, indices, 0.0)  # too large alone
    assert fused_gather_applies(queries, keys, values, indices, 0.0, with_logits=True)
    dense_index = torch.zeros(b, hq, q, k // 4, dtype=torch.int64)  # 1/4 of the keys
    assert not fused_gather_applies(queries, keys, values, dense_index, 0.0, with_logits=True)
    fused, name = index_form.index_attention_reference_named(
        queries, keys, values, indices, None, scaling=0.3, logits=logits
    )
    assert name == "reference/gather-fused+logits"
    monkeypatch.setattr(index_form, "fused_gather_applies", lambda *args: False)
    plain, name = index_form.index_attention_reference_named(
        queries, keys, values, indices, None, scaling=0.3, logits=logits
    )
    assert name == "reference/dense-chunk+logits"
    assert torch.allclose(fused, plain, atol=1e-6)
    # and both are the softmax of the given logits over the indexed value rows
    probs = torch.softmax(logits.double(), -1).nan_to_num(0.0)
    group = torch.arange(hq) // (hq // hkv)
    rows = values.double()[:, group].unsqueeze(2).expand(b, hq, q, k, d)
    picked = rows.gather(3, indices.clamp(min=0)[..., None].expand(b, hq, q, width, d))
    expected = (probs[..., None] * picked).sum(3)
    assert torch.allclose(fused.double(), expected, atol=1e-5)


def test_a_dense_prefix_gives_the_gathered_output(monkeypatch) -> None:
    """With entry logits whose first entries are the keys 0, 1, ... (a sink), the kernel
    may leave their share to one dense p @ V: the same output as gathering them, for rows
    where some of those keys are forbidden (-inf), a row that attends nothing, and a NaN
    row; serial and split over threads."""
    from sah_core.attention import fused_gather

    gen = torch.Generator().manual_seed(5)
    b, hq, hkv, q, k, d, prefix, rest = 2, 4, 2, 12, 40, 8, 6, 5
    queries = torch.randn(b, hq, q, d, generator=gen)
    keys = torch.randn(b, hkv, k, d, generator=gen)
    values = torch.randn(b, hkv, k, d, generator=gen)
    tail = torch.stack(
        [torch.randperm(k - prefix, generator=gen)[:rest] + prefix for _ in range(b * hq * q)]
    )
    indices = torch.cat(
        [torch.arange(prefix).expand(b, hq, q, prefix), tail.view(b, hq, q, rest)], dim=-1
    ).contiguous()
    logits = torch.randn(b, hq, q, prefix + rest, generator=gen)
    logits[0, 0, :3, 2:prefix] = float("-inf")  # keys of the sink past the row's limit
    logits[1, 2, 4] = float("-inf")  # attends nothing
    logits[1, 3, 5, 7] = float("nan")
    s_aux = torch.randn(hq, generator=gen)
    for threshold in (1 << 40, 0):
        monkeypatch.setattr(fused_gather, "FUSED_PARALLEL_MIN_WORK", threshold)
        args = (queries, keys, values, indices, None)
        gathered = fused_gather_attention(*args, scaling=0.3, slot_logits=logits, s_aux=s_aux)
        dense = fused_gather_attention(
            *args, scaling=0.3, slot_logits=logits, s_aux=s_aux, dense_prefix=prefix
        )
        assert torch.equal(gathered.isnan(), dense.isnan())
        assert bool(dense[1, 3, 5].isnan().all()) and torch.equal(dense[1, 2, 4], torch.zeros(d))
        assert torch.allclose(gathered.nan_to_num(), dense.nan_to_num(), atol=1e-6)


def test_a_non_finite_prefix_value_keeps_the_gather() -> None:
    """p = 0 times an infinite value would be NaN in the dense p @ V: such a prefix is
    gathered (and skipped where forbidden), as without it."""
    values = torch.randn(1, 2, 10, 4)
    assert index_form._usable_prefix(values, 3) == 3
    values[0, 1, 2, 0] = float("inf")
    assert index_form._usable_prefix(values, 3) == 0
    assert index_form._usable_prefix(values, 2) == 2


def test_a_question_prefill_without_masker_scores_takes_the_kernel(helpers) -> None:
    """At a density where the torch strategy is the dense chunk (two grouped matmuls over
    every key) but below FUSED_KEYS_MAX_DENSITY, a call whose masker computed no scores takes
    the kernel (it reads only the selected keys); with a masker's scores, or denser, the
    dense chunk. All equal the row loop."""
    queries, keys, values, indices, weights, gen = inputs(q=8, k=64, width=12)
    mask = torch.randn(2, 1, 8, 64, generator=gen)
    k = keys.shape[2]
    expected = helpers.naive_attention(
        queries, keys, values, dense_weights(indices, weights, k), 0.3, mask, None
    )
    fused, name = index_form.index_attention_reference_named(
        queries, keys, values, indices, weights, scaling=0.3, attention_mask=mask
    )
    assert name == "reference/gather-fused"
    group = torch.arange(6) // 3
    scores = torch.einsum("bhqd,bhkd->bhqk", queries, keys[:, group]) * 0.3
    dense, name = index_form.index_attention_reference_named(
        queries,
        keys,
        values,
        indices,
        weights,
        scaling=0.3,
        attention_mask=mask,
        shared_scores=lambda start, end: scores[:, :, start:end],
    )
    assert name == "reference/dense-chunk"
    for got in (fused, dense):
        assert torch.allclose(got.double(), expected.double(), atol=1e-5)
    *_, wide, wide_w, _ = inputs(q=8, k=64, width=24)  # 24 of 64 keys: above the limit
    got, name = index_form.index_attention_reference_named(
        queries, keys, values, wide, wide_w, scaling=0.3, attention_mask=mask
    )
    assert name == "reference/dense-chunk"
    expected = helpers.naive_attention(
        queries, keys, values, dense_weights(wide, wide_w, k), 0.3, mask, None
    )
    assert torch.allclose(got.double(), expected.double(), atol=1e-5)
