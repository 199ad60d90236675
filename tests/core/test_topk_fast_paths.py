"""The top-k base's fast paths against independent references.

* ``stable_top`` (tie-aware top-k: one ``torch.topk`` for the threshold, then the lowest-index
  ties) selects exactly the first ``take`` entries of a stable descending sort;
* the prefill path of exact-logit top-k (OracleTopK over several query chunks, the selected
  keys' logits kept for the attention) selects a valid top-k of the true logits, the same
  mask as the general path, and gives the fp64 attention of that mask.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import (
    LocalMaskerConfig,
    Mask,
    MaskerConfig,
    OracleTopKConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)
from sah_core.attention.common import index_logits
from sah_core.maskers.oracle_top_k import OracleTopK
from sah_core.maskers.topk_base import stable_top

_spec = importlib.util.spec_from_file_location("refs", Path(__file__).with_name("naive_refs_b.py"))
assert _spec is not None and _spec.loader is not None
refs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refs)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    length=st.integers(1, 50),
    take_frac=st.floats(0.0, 1.0),
    levels=st.integers(1, 6),
    best_first=st.booleans(),
)
def test_stable_top_equals_stable_sort(
    seed: int, length: int, take_frac: float, levels: int, best_first: bool
) -> None:
    gen = torch.Generator().manual_seed(seed)
    # few distinct values (many ties) and some -inf, as bit counts and shared codes give
    scores = torch.randint(0, levels, (2, 3, length), generator=gen).float()
    scores[torch.rand(scores.shape, generator=gen) < 0.2] = float("-inf")
    take = round(take_frac * length)
    values, idx = stable_top(scores.clone(), take, best_first)
    ref_values, ref_idx = scores.sort(dim=-1, descending=True, stable=True)
    ref_values, ref_idx = ref_values[..., :take], ref_idx[..., :take]
    if best_first:
        assert torch.equal(idx, ref_idx) and torch.equal(values, ref_values)
    else:
        assert torch.equal(idx.sort(-1).values, ref_idx.sort(-1).values)
        assert torch.equal(values, scores.gather(-1, idx))


def test_stable_top_with_nan_falls_back_to_the_sort() -> None:
    scores = torch.tensor([[1.0, float("nan"), 1.0, 0.5, 1.0]])
    values, idx = stable_top(scores.clone(), 2)
    assert idx.tolist() == [[1, 0]] and math.isnan(float(values[0, 0]))


def _attention(
    configs: list[MaskerConfig], chunk: int, logit_scores: bool, *inputs: torch.Tensor
) -> tuple[Mask, torch.Tensor | None, torch.Tensor]:
    """(mask, the logits kept for it, output [B, Hq, Q, D]) of one ResearchAttention call."""
    queries, keys, values, mask = inputs
    attention = ResearchAttention.create_from_config(
        ResearchAttentionConfig(configs), query_chunk_size=chunk
    )
    saved = OracleTopK.logit_scores
    OracleTopK.logit_scores = logit_scores
    try:
        call = attention.plan(queries, keys, values, mask, 0.3, 0.0, {}, 0)
        selected = attention.mask_for(call)
        kept = index_logits(call, selected)
        out, _ = attention.custom_attention(
            None, queries, keys, values, mask, 0.3, 0.0, {}, layer_idx=0
        )
    finally:
        OracleTopK.logit_scores = saved
    return selected, kept, out.transpose(1, 2)


@pytest.mark.parametrize(
    ("fixed", "heavy", "chunk", "padded"),
    [
        ([SinkMaskerConfig(5)], 4, 4, False),  # sink: a key range, sliced off the top-k
        ([SinkMaskerConfig(3), LocalMaskerConfig(4)], 0.2, 5, False),  # a diagonal band
        ([], 6, 7, True),  # nothing before, left padding (finfo.min) in one batch row
        ([SinkMaskerConfig(20)], 3, 4, False),  # sink wider than the first chunk's keys
    ],
)
def test_prefill_path_keeps_exact_logits(
    fixed: list[MaskerConfig], heavy: int | float, chunk: int, padded: bool
) -> None:
    queries, keys, values = refs.make_qkv(3, 2, 4, 2, 19, 30, 8)
    mask = refs.causal_mask(2, 19, 30)
    if padded:
        mask[1, :, :, :4] = torch.finfo(torch.float32).min
    configs = [*fixed, OracleTopKConfig(heavy)]
    fast, kept, out = _attention(configs, chunk, True, queries, keys, values, mask)
    general, none_kept, general_out = _attention(configs, chunk, False, queries, keys, values, mask)
    assert kept is not None and none_kept is None
    assert torch.equal(fast.get_dense_mask(), general.get_dense_mask())
    # the kept logits are the true ones (attention mask included) at every real entry
    idx, _ = fast.index_view()
    true = torch.einsum("bhqd,bhkd->bhqk", queries, keys.repeat_interleave(2, dim=1)) * 0.3
    true = true + mask
    real = idx >= 0
    expect = true.gather(-1, idx.clamp(min=0))
    finite = real & (expect > torch.finfo(torch.float32).min / 2)
    torch.testing.assert_close(kept[finite], expect[finite], rtol=1e-5, atol=1e-5)
    # the top-k part is a valid top-k of the true logits outside the fixed keys
    previous = torch.zeros(true.shape, dtype=torch.bool)
    if fixed:
        previous = (
            _attention(fixed, chunk, True, queries, keys, values, mask)[0].get_dense_mask() > 0
        )
    allowed = refs.allowed_keys(mask, true.shape) & ~previous
    budget = heavy if isinstance(heavy, int) else math.ceil(heavy * 30)
    chosen = (fast.get_dense_mask() > 0) & ~previous
    refs.check_valid_topk(chosen, true, allowed, budget)
    # the output is the fp64 attention of the selected mask, and the general path's
    ref = refs.dense_reference(
        queries * (0.3 * math.sqrt(8)), keys, values, mask, fast.get_dense_mask()
    )
    assert float((out.double() - ref).abs().max()) <= 1e-5
    assert float((out - general_out).abs().max()) <= 1e-5


@pytest.mark.parametrize("chunk", [19, 4])  # one query chunk (the stack's last masker), several
def test_padded_prefill_keeps_exact_logits_with_row_budgets(chunk: int) -> None:
    """Left padding and a fractional budget: each batch row keeps ``int(0.3 * n)`` keys of
    its own ``n`` valid keys (a per-row budget), a valid top-k of the true logits, with the
    logits kept for the attention; the same mask and output as the general path."""
    queries, keys, values = refs.make_qkv(5, 2, 4, 2, 19, 30, 8)
    mask = refs.causal_mask(2, 19, 30)
    pad = 6
    mask[1, :, :, :pad] = torch.finfo(torch.float32).min
    fixed: list[MaskerConfig] = [SinkMaskerConfig(2), LocalMaskerConfig(3)]
    configs = [*fixed, OracleTopKConfig(0.3)]
    fast, kept, out = _attention(configs, chunk, True, queries, keys, values, mask)
    general, none_kept, general_out = _attention(configs, chunk, False, queries, keys, values, mask)
    assert kept is not None and none_kept is None
    assert torch.equal(fast.get_dense_mask(), general.get_dense_mask())
    true = torch.einsum("bhqd,bhkd->bhqk", queries, keys.repeat_interleave(2, dim=1)) * 0.3
    true = true + mask
    previous = _attention(fixed, chunk, True, queries, keys, values, mask)[0].get_dense_mask() > 0
    allowed = refs.allowed_keys(mask, true.shape) & ~previous
    chosen = (fast.get_dense_mask() > 0) & ~previous
    for row, valid_keys in enumerate((30, 30 - pad)):
        budget = int(0.3 * valid_keys)
        refs.check_valid_topk(
            chosen[row : row + 1], true[row : row + 1], allowed[row : row + 1], budget
        )
    ref = refs.dense_reference(
        queries * (0.3 * math.sqrt(8)), keys, values, mask, fast.get_dense_mask()
    )
    assert float((out.double() - ref).abs().max()) <= 1e-5
    assert float((out - general_out).abs().max()) <= 1e-5


def test_one_chunk_keeps_the_shared_scores_for_a_later_masker() -> None:
    """With one query chunk the top-k keeps its picks' logits for the attention only as the
    stack's last masker; with another masker after it, it leaves the call's shared scores
    (which that one may read) and keeps no logits."""
    queries, keys, values = refs.make_qkv(7, 1, 4, 2, 6, 30, 8)
    mask = refs.causal_mask(1, 6, 30)
    for configs, last in (
        ([SinkMaskerConfig(2), OracleTopKConfig(5)], True),
        ([SinkMaskerConfig(2), OracleTopKConfig(5), LocalMaskerConfig(3)], False),
    ):
        attention = ResearchAttention.create_from_config(ResearchAttentionConfig(configs))
        call = attention.plan(queries, keys, values, mask, 0.3, 0.0, {}, 0)
        attention.mask_for(call)
        assert (call.cached_scores(0, 6) is None) == last
        logits = call._shared.get("index_logits")
        assert (logits is not None) == last
