"""Shared helpers of the tests of the part-B research maskers (HashAttention, Double Sparsity,
Quest, SOCKET, PQCache, MagicPIG): inputs, an fp32 dense reference, and property checks that
hold for every top-k masker. Each masker's own naive score reference lives in its test file.

Test files load this module by path (pytest runs with ``--import-mode=importlib``)::

    refs = load_refs()   # see the top of each test_maskers_*.py
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from sah_core import Mask, ResearchAttention, ResearchAttentionConfig
from sah_core.call_plan import CallPlan
from sah_core.maskers.base import MaskerConfig, ResearchMasker

MaskerFactory = Callable[[], ResearchMasker]


def make_qkv(
    seed: int, b: int, hq: int, hkv: int, q: int, k: int, d: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random fp32 ``queries [B, Hq, Q, D]``, ``keys``/``values`` ``[B, Hkv, K, D]``."""
    gen = torch.Generator().manual_seed(seed)
    queries = torch.randn(b, hq, q, d, generator=gen)
    keys = torch.randn(b, hkv, k, d, generator=gen)
    values = torch.randn(b, hkv, k, d, generator=gen)
    return queries, keys, values


def causal_mask(b: int, q: int, k: int) -> torch.Tensor:
    """Additive ``[B, 1, Q, K]`` mask: query i (absolute position K-Q+i) sees keys <= it."""
    rows = torch.arange(k - q, k).unsqueeze(1)
    cols = torch.arange(k).unsqueeze(0)
    allowed = cols <= rows
    mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    return mask.expand(b, 1, q, k).clone()


def allowed_keys(attention_mask: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """Bool ``[B, H, Q, K]``: True where the additive mask lets a query see a key."""
    if attention_mask is None:
        return torch.ones(shape, dtype=torch.bool)
    return (attention_mask > torch.finfo(torch.float32).min / 2).expand(shape)


def call_masker(
    masker: ResearchMasker,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    meta: dict[Any, Any] | None = None,
    previous: Mask | None = None,
    layer_idx: int | None = 0,
    query_chunk_size: int | None = None,
) -> Mask:
    """One ``add_mask(call, previous)`` as ``ResearchAttention`` makes it (stack position 0,
    so the masker's state slot in ``meta`` persists between calls)."""
    b, hq, q, _ = queries.shape
    k = keys.shape[2]
    prev = previous if previous is not None else Mask.empty((b, hq, q, k))
    call = CallPlan.build(
        queries,
        keys,
        values,
        attention_mask,
        1.0 / math.sqrt(queries.shape[-1]),
        layer_idx=layer_idx,
        sparse_meta_data={} if meta is None else meta,
        query_chunk_size=query_chunk_size,
    )
    return masker.add_mask(call.for_masker(0, type(masker.config).__name__), prev)


def plan(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    meta: dict[Any, Any] | None = None,
    layer_idx: int | None = 0,
) -> CallPlan:
    """A ``CallPlan`` for calling a masker's hooks (``prepare``, ``key_scores``) directly."""
    call = CallPlan.build(
        queries,
        keys,
        values,
        attention_mask,
        1.0 / math.sqrt(queries.shape[-1]),
        layer_idx=layer_idx,
        sparse_meta_data={} if meta is None else meta,
    )
    return call.for_masker(0, "test")


def selected(mask: Mask) -> torch.Tensor:
    """Bool ``[B, H, Q, K]`` of attended entries."""
    return mask.get_dense_mask() > 0


def check_valid_topk(
    chosen: torch.Tensor,
    ref_scores: torch.Tensor,
    allowed: torch.Tensor,
    budget: int,
    tol: float = 1e-4,
) -> None:
    """``chosen`` (bool, excluding previously selected keys) is a top-``budget`` set of
    ``ref_scores`` over the ``allowed`` keys, row by row (ties may be broken either way)."""
    b, h, q, _ = chosen.shape
    for bi in range(b):
        for hi in range(h):
            for qi in range(q):
                row_allowed = allowed[bi, hi, qi]
                row_chosen = chosen[bi, hi, qi]
                assert not bool((row_chosen & ~row_allowed).any()), "selected a forbidden key"
                available = int(row_allowed.sum())
                assert int(row_chosen.sum()) == min(budget, available)
                if int(row_chosen.sum()) in (0, available):
                    continue
                scores = ref_scores[bi, hi, qi].double()
                lowest_in = float(scores[row_chosen].min())
                highest_out = float(scores[row_allowed & ~row_chosen].max())
                scale = max(1.0, abs(lowest_in), abs(highest_out))
                assert lowest_in >= highest_out - tol * scale, (
                    f"row {(bi, hi, qi)}: kept score {lowest_in} < dropped score {highest_out}"
                )


def dense_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """fp64 importance-weighted attention ``[B, Hq, Q, D]`` (``weights`` = dense mask; None =
    dense attention), written with plain loops over heads."""
    b, hq, q, d = queries.shape
    group = hq // keys.shape[1]
    scaling = 1.0 / math.sqrt(d)
    out = torch.zeros(b, hq, q, d, dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            kv = hi // group
            logits = queries[bi, hi].double() @ keys[bi, kv].double().T * scaling
            if attention_mask is not None:
                logits = logits.masked_fill(
                    attention_mask[bi, 0] <= torch.finfo(torch.float32).min / 2, float("-inf")
                )
            probs_num = torch.exp(logits - logits.max(-1, keepdim=True).values)
            if weights is not None:
                w = weights[bi, hi].double()
                probs_num = torch.where(w > 0, probs_num / w.clamp_min(1e-300), 0.0)
            probs = probs_num / probs_num.sum(-1, keepdim=True)
            out[bi, hi] = probs @ values[bi, kv].double()
    return out


def research_output(
    configs: list[MaskerConfig],
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    meta: dict[Any, Any] | None = None,
) -> torch.Tensor:
    """``ResearchAttention.custom_attention`` output, back in ``[B, Hq, Q, D]``."""
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(configs))
    out, _ = attention.custom_attention(
        None,
        queries,
        keys,
        values,
        attention_mask,
        1.0 / math.sqrt(queries.shape[-1]),
        0.0,
        {} if meta is None else meta,
        layer_idx=0,
    )
    return out.transpose(1, 2)


# --------------------------------------------------------------------------- properties


def check_common_properties(
    factory: MaskerFactory,
    full_budget_config: MaskerConfig,
    seed: int = 0,
    tied_scores: bool = False,
) -> None:
    """Weights in [0, 1]; causality; previous mask untouched; determinism; full budget ==
    dense attention through ``ResearchAttention`` (fp32 max abs error <= 1e-5)."""
    queries, keys, values = make_qkv(seed, 1, 4, 2, 6, 20, 8)
    attn = causal_mask(1, 6, 20)
    # previous mask: key 0 for every row, in index form
    idx = torch.zeros(1, 4, 6, 1, dtype=torch.int64)
    previous = Mask.from_index(idx, torch.ones(1, 4, 6, 1), (1, 4, 6, 20))
    prev_idx, prev_w = previous.get_index_form()
    inputs = (queries.clone(), keys.clone(), values.clone(), attn.clone())

    mask = call_masker(factory(), queries, keys, values, attn, {}, previous)
    dense = mask.get_dense_mask()
    assert float(dense.min()) >= 0.0 and float(dense.max()) <= 1.0
    forbidden = ~allowed_keys(attn, dense.shape)
    assert not bool((dense[forbidden] > 0).any()), "a masked (future) key was selected"
    assert bool((dense[..., 0] == 1).all()), "the previous mask's keys were dropped"
    # inputs and previous mask untouched
    now_idx, now_w = previous.get_index_form()
    assert torch.equal(now_idx, prev_idx) and torch.equal(now_w, prev_w)
    for before, after in zip(inputs, (queries, keys, values, attn), strict=True):
        assert torch.equal(before, after)
    # deterministic: a fresh masker and fresh state give the same mask
    again = call_masker(factory(), queries, keys, values, attn, {}, previous)
    assert torch.equal(again.get_dense_mask(), dense)
    # query chunking does not change the selection (with tied scores -- Quest pages,
    # HashAttention bit counts, keys sharing PQ codes -- torch.topk may break ties differently
    # per chunk, so only the per-row counts must agree)
    chunked = call_masker(factory(), queries, keys, values, attn, {}, previous, query_chunk_size=2)
    if tied_scores:
        assert torch.equal(chunked.row_counts(), mask.row_counts())
    else:
        assert torch.equal(chunked.get_dense_mask(), dense)
    # full budget == dense attention
    out = research_output([full_budget_config], queries, keys, values, attn)
    ref = dense_reference(queries, keys, values, attn)
    assert float((out.double() - ref).abs().max()) <= 1e-5


def prefill_then_decode(
    masker: ResearchMasker,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    prefill: int,
    meta: dict[Any, Any],
) -> Iterator[tuple[int, torch.Tensor, Mask]]:
    """Call ``masker`` once on the first ``prefill`` positions (causal), then once per later
    position as a decode step reusing ``meta``; yields ``(key_len, query, mask)`` per step."""
    call_masker(
        masker,
        queries[:, :, :prefill],
        keys[:, :, :prefill],
        values[:, :, :prefill],
        causal_mask(queries.shape[0], prefill, prefill),
        meta,
    )
    for k in range(prefill + 1, keys.shape[2] + 1):
        q_slice = queries[:, :, k - 1 : k]
        yield k, q_slice, call_masker(masker, q_slice, keys[:, :, :k], values[:, :, :k], None, meta)


def check_state_reuse(
    factory: MaskerFactory, prefill: int = 12, steps: int = 5, seed: int = 1, hq: int = 4
) -> None:
    """A prefill call, then decode calls that reuse ``sparse_meta_data``, select exactly what
    a fresh masker with fresh state selects on the same keys."""
    queries, keys, values = make_qkv(seed, 2, hq, 2, prefill + steps, prefill + steps, 8)
    masker = factory()
    meta: dict[Any, Any] = {}
    for k, q_slice, reused in prefill_then_decode(masker, queries, keys, values, prefill, meta):
        fresh = call_masker(factory(), q_slice, keys[:, :, :k], values[:, :, :k], None, {})
        assert torch.equal(selected(reused), selected(fresh)), f"decode at {k} keys differs"
    # a second question over the same context (other keys after the prefill) reuses the
    # context's summaries and still selects what a fresh masker selects
    other_q, other_k, other_v = make_qkv(seed + 100, 2, hq, 2, 3, 3, 8)
    keys2 = torch.cat([keys[:, :, :prefill], other_k], dim=2)
    values2 = torch.cat([values[:, :, :prefill], other_v], dim=2)
    reused = call_masker(masker, other_q, keys2, values2, causal_mask(2, 3, prefill + 3), meta)
    fresh = call_masker(factory(), other_q, keys2, values2, causal_mask(2, 3, prefill + 3), {})
    assert torch.equal(selected(reused), selected(fresh)), "second question differs"


# --------------------------------------------------------------------------- batch safety


def check_batch_safe(
    factory: MaskerFactory,
    context: int = 14,
    lengths: tuple[int, int] = (7, 3),
    steps: int = 3,
    seed: int = 5,
    hq: int = 4,
    d: int = 8,
) -> None:
    """A batch laid out as the adapter lays it, ``[context | pads | question | new tokens]``
    with the pads masked as keys (and filled with large garbage), selects for each row
    exactly what the row selects alone, in the question prefill and in decode steps that
    reuse the state."""
    longest = max(lengths)
    total = context + longest + steps
    queries, keys, values = make_qkv(seed, 2, hq, 2, total, total, d)
    garbage = 50.0 * torch.randn(2, 2, longest, d, generator=torch.Generator().manual_seed(9))
    # per row: which batched key positions hold real tokens
    real = torch.ones(2, total, dtype=torch.bool)
    for row, n in enumerate(lengths):
        real[row, context : context + longest - n] = False
    keys = torch.where(real[:, None, :, None], keys, 0.0)
    keys[:, :, context : context + longest] += torch.where(
        real[:, None, context : context + longest, None], 0.0, garbage
    )
    batch_meta: dict[Any, Any] = {}
    alone_meta: list[dict[Any, Any]] = [{}, {}]
    masker = factory()
    alone = [factory(), factory()]
    for end in range(context + longest, total + 1):
        start = context if end == context + longest else end - 1
        q_pos = torch.arange(start, end)
        allowed = (torch.arange(end)[None, :] <= q_pos[:, None]) & real[:, None, :end]
        am = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[:, None]
        got = selected(
            call_masker(
                masker,
                queries[:, :, start:end],
                keys[:, :, :end],
                values[:, :, :end],
                am,
                batch_meta,
            )
        )
        for row in range(2):
            cols = real[row, :end].nonzero().flatten()
            rows_real = real[row, start:end].nonzero().flatten()
            q_idx = start + rows_real
            kr, vr = keys[row : row + 1, :, cols], values[row : row + 1, :, cols]
            qr = queries[row : row + 1, :, q_idx]
            n_keys = cols.numel()
            own = torch.arange(n_keys - qr.shape[2], n_keys)
            causal = torch.arange(n_keys)[None, :] <= own[:, None]
            own_mask = torch.where(causal, 0.0, torch.finfo(torch.float32).min)[None, None]
            want = selected(call_masker(alone[row], qr, kr, vr, own_mask, alone_meta[row]))
            mine = got[row : row + 1][:, :, rows_real][..., cols]
            assert torch.equal(mine, want), f"row {row} at {end} keys differs from alone"
