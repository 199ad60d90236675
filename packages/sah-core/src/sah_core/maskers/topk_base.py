"""Top-k base: a subclass supplies a score per key, the base keeps the best ``heavy_size``.

The base resolves the budget (int count, or float fraction of the key length; a budget
``>= K`` gives a full mask), works one query chunk at a time (so prefill never holds a
``[B, H, Q, K]`` score tensor for all Q), restricts each chunk to the key columns its
attention mask allows (the causal part in prefill), never selects a key already in the
previous mask or one the attention mask forbids, and emits index form with weight 1.
Selected count per row = ``min(budget, available keys)``.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import grouped_scores_into, remember_index_logits
from sah_core.attention.cpu_top_k import copy_lead, kernel_applies, row_top_k, row_top_k_into
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import (
    MaskerConfig,
    ResearchMasker,
    check_selection_size,
    known_spans,
    resolve_size,
    uses_old_signature,
    warn_old_hook,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TopKMaskerConfig(MaskerConfig):
    """Config of a top-k masker: ``heavy_size`` keys per row (int count or float fraction)."""

    heavy_size: int | float = 0
    #: The budget: what the target density leaves after the fixed maskers.
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {"heavy_size": sp.WHOLE_BUDGET}, (sp.budget_left,)
    )

    def validate(self) -> None:
        super().validate()
        check_selection_size(self, "heavy_size", self.heavy_size)


def expand_page_scores(page_scores: torch.Tensor, page_size: int, key_len: int) -> torch.Tensor:
    """Per-page scores ``[..., P]`` -> per-key scores ``[..., key_len]`` (each key gets its
    page's score), for page-level methods such as Quest."""
    expanded = page_scores.repeat_interleave(page_size, dim=-1)
    if expanded.shape[-1] < key_len:
        raise ValueError(
            f"page_scores cover {expanded.shape[-1]} keys, which is not allowed: need >= "
            f"{key_len} (P * page_size)"
        )
    return expanded[..., :key_len]


def exclude_previous(scores: torch.Tensor, previous: Mask) -> torch.Tensor:
    """Set ``scores[..., j] = -inf`` where the (chunk of the) previous mask selects key j.

    ``scores`` covers the first ``scores.shape[-1]`` keys and is modified in place.
    """
    limit = scores.shape[-1]
    kind = previous.representation
    if kind == "empty":
        return scores
    if kind == "full":
        return scores.fill_(float("-inf"))
    if kind == "dense":
        dense = previous._dense_view()[..., :limit]
        return scores.masked_fill_(dense > 0, float("-inf"))
    idx, w = previous.index_view()
    if idx.shape[-1] == 0:
        return scores
    valid = (idx >= 0) & (idx < limit)
    if w is not None:
        valid &= w > 0
    # amin-scatter: real entries write -inf, padding writes +inf (no effect), so padding
    # can safely point at column 0.
    src = torch.where(valid, float("-inf"), float("inf")).to(scores.dtype)
    safe = torch.where(valid, idx, 0)
    return scores.scatter_reduce_(-1, safe, src, reduce="amin", include_self=True)


def outside_previous(shape: tuple[int, int, int, int], previous: Mask) -> torch.Tensor:
    """Bool ``shape = [B, H, Qc, L]``: True at the first ``L`` keys the (chunk of the)
    previous mask does not select (the bool form of :func:`exclude_previous`, without a
    float tensor to scan)."""
    b, h, rows, limit = shape
    kind = previous.representation
    device = previous.device
    if kind == "empty":
        return torch.ones(shape, dtype=torch.bool, device=device)
    if kind == "full":
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if kind == "dense":
        return ~(previous._dense_view()[..., :limit] > 0).expand(shape)
    idx, w = previous.index_view()
    valid = (idx >= 0) & (idx < limit)
    if w is not None:
        valid &= w > 0
    # padding and weight-0 entries clear a spare last column
    wide = torch.ones((b, h, rows, limit + 1), dtype=torch.bool, device=device)
    wide.scatter_(-1, torch.where(valid, idx, limit), False)
    return wide[..., :limit]


def free_range(spans: list[tuple[int, int]], key_len: int) -> tuple[int, int] | None:
    """The one key range ``[lo, hi)`` of ``[0, key_len)`` that ``spans`` leave free, when the
    spans cover exactly a prefix and a suffix (sink + local window; ``[]``: every key); None
    when they leave several ranges. ``hi <= lo``: the spans cover every key."""
    lo, hi = 0, key_len
    for a, z in sorted((max(0, a), min(key_len, z)) for a, z in spans):
        if z <= a:
            continue
        if a <= lo:
            lo = max(lo, z)
        elif z >= hi or z >= key_len:
            hi = min(hi, a)
        else:
            return None  # a span inside the free range splits it
    return lo, max(lo, hi)


_SIGN_FLIP = 0x7FFFFFFF


def ordered_int_keys(scores: torch.Tensor) -> torch.Tensor:
    """int32 keys of fp32 ``scores`` in the same order (NaN ranks highest, as in
    ``torch.topk``), for faster top-k on the CPU. Overwrites NaN in ``scores`` with +inf."""
    bits = scores.nan_to_num_(nan=float("inf"), posinf=float("inf"), neginf=float("-inf"))
    bits = bits.view(torch.int32)
    # negative floats order backwards as ints: flip their magnitude bits
    return (bits >> 31).bitwise_and_(_SIGN_FLIP).bitwise_xor_(bits)


def ordered_int_key(value: float) -> int:
    """The :func:`ordered_int_keys` key of one float."""
    bits = int(struct.unpack("<i", struct.pack("<f", value))[0])
    return bits ^ _SIGN_FLIP if bits < 0 else bits


def stable_top(
    scores: torch.Tensor, take: int, best_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``take`` best entries of each row of fp32 ``scores [...,
    L]``, ties broken toward the lower index: the same set as the first ``take`` of a stable
    descending sort. Indices ascend within a row unless ``best_first`` (then they follow the
    scores, ties by index, as the sort would give them).

    One ``torch.topk`` finds the ``take``-th best value ``v`` of each row; the row keeps every
    entry above ``v`` and the lowest-index entries equal to ``v`` until it holds ``take``: a
    few passes over the row instead of a sort of it (a stable sort of a 32K-key row costs
    5-10x a top-k). A row with NaN falls back to the sort (NaN ranks highest in both).
    """
    length = scores.shape[-1]
    take = min(take, length)
    if take == 0 or take == length:
        if not best_first:
            idx = torch.arange(take, device=scores.device).expand(*scores.shape[:-1], take)
            return scores[..., :take], idx
        values, idx = scores.sort(dim=-1, descending=True, stable=True)
        return values[..., :take], idx[..., :take]
    kth = scores.topk(take, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    if bool(torch.isnan(kth).any()):
        values, idx = scores.sort(dim=-1, descending=True, stable=True)
        return values[..., :take], idx[..., :take]
    equal = scores == kth
    chosen = scores > kth
    need = chosen.sum(-1, keepdim=True, dtype=torch.int32).neg_().add_(take)
    chosen |= equal.logical_and_(equal.cumsum(-1, dtype=torch.int32) <= need)
    # exactly `take` entries per row: the row-major nonzero lists them row by row, ascending
    idx = chosen.view(-1, length).nonzero()[:, 1].view(*scores.shape[:-1], take)
    values = scores.gather(-1, idx)
    if best_first:
        values, order = values.sort(dim=-1, descending=True, stable=True)
        idx = idx.gather(-1, order)
    return values, idx


class TopKMasker(ResearchMasker):
    """Base of the top-k maskers (see module doc). Override ``key_scores`` only.

    Hooks: ``prepare(call) -> state`` (once per call, e.g. hashing or summarising keys;
    default None) and ``key_scores(call, chunk, state) -> [B, Hq, Qc, K']`` (one query chunk).
    The old hook signatures (``prepare(keys, queries, ...)``, ``key_scores(keys, queries,
    values, scaling, state, *, key_limit, **kwargs)``) still work until 0.3, with a warning.
    """

    config: TopKMaskerConfig
    #: key ranges of the previous mask during one add_mask (blanked by slicing), else None
    _spans: list[tuple[int, int]] | None = None
    #: True when many keys can share one score (bit counts, shared codes): ties then go to
    #: the lower key index (a stable sort), the same batched and alone.
    tied_scores: ClassVar[bool] = False
    #: True when ``key_scores`` returns ``call.chunk_scores(chunk)`` unchanged, the exact
    #: logits ``scaling * q . k`` (OracleTopK): a call of several query chunks (prefill) then
    #: computes them itself, chunk by chunk into one reused buffer, and keeps the selected
    #: keys' logits for the attention (which then skips its own ``q . K``). A subclass that
    #: overrides ``key_scores`` is False unless it sets this itself.
    logit_scores: ClassVar[bool] = False
    _old_prepare: bool = False
    _old_scores: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._old_prepare = uses_old_signature(cls.prepare)
        cls._old_scores = uses_old_signature(cls.key_scores)
        if "key_scores" in cls.__dict__ and "logit_scores" not in cls.__dict__:
            cls.logit_scores = False

    def budget(self, key_len: int) -> int:
        """Keys to select per row for a key length (default: ``heavy_size`` resolved)."""
        return resolve_size(self.config.heavy_size, key_len)

    def prepare(self, call: CallPlan) -> Any:
        """Once-per-call work shared by all query chunks; the result reaches ``key_scores``
        as ``state``. Default: nothing."""
        return None

    @abstractmethod
    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        """Score of every key for the queries of ``chunk`` -> ``[B, Hq, Qc, K']``.

        Higher = more important; NaN is not allowed. ``K'`` must be ``>= chunk.key_limit``:
        keys at or beyond ``chunk.key_limit`` are forbidden for every row of the chunk, so
        scoring only ``call.keys[:, :, :chunk.key_limit]`` is enough (and faster). Columns
        beyond ``K'`` are never selected. The base may modify the returned tensor in place
        (return a fresh one).
        """

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        shape = call.shape
        b, h, q, k = shape
        if previous.representation == "full":
            return previous
        budget = self.budget(k)
        if budget >= k:
            if not getattr(self, "_told_dense", False):
                self._told_dense = True
                logger.info(
                    "%s: a budget of %d keys covers all K=%d keys, so it selects every key",
                    type(self).__name__,
                    budget,
                    k,
                )
            return Mask.full(shape, previous.device, previous.dtype)
        if budget <= 0 or q == 0:
            return previous
        row_budget = self._row_budgets(call)
        state = self._run_prepare(call)
        spans = known_spans(call, previous)
        if spans is not None:
            # the previous keys are whole ranges: _run_scores blanks them by slicing
            self._spans = spans
            previous_for_select = Mask.empty(shape, previous.device, previous.dtype)
        else:
            self._spans = None
            previous_for_select = previous
        chunks = call.query_chunks()
        take = min(budget, k)
        if spans is not None and row_budget is None and len(chunks) == 1:
            fast = self._top_outside_spans(call, chunks[0], state, spans, budget)
            if fast is not None:
                self._spans = None
                mine = Mask.from_index(
                    fast, None, shape, assume_unique=True, validate=False, dtype=previous.dtype
                )
                return previous.merge_disjoint(mine)
        if (
            # one chunk: only for the stack's last masker (a later one may read the call's
            # shared scores, which this path does not keep)
            (len(chunks) > 1 or call.last_in_stack)
            and self.logit_scores
            and not self.tied_scores
            and not self._old_scores
            and type(self)._select is TopKMasker._select
        ):
            fused = self._select_keeping_logits(call, previous, spans, take, chunks, row_budget)
            if fused is not None:
                self._spans = None
                return fused
        if len(chunks) == 1 and chunks[0].key_limit > 0:
            chunk = chunks[0]
            chosen = self._select_chunk(
                self._run_scores(call, chunk, state), budget, chunk, previous_for_select, row_budget
            )
            if chosen.shape[-1] < take:
                chosen = torch.nn.functional.pad(chosen, (0, take - chosen.shape[-1]), value=-1)
            indices = chosen
        else:
            indices = torch.full((b, h, q, take), -1, dtype=torch.int64, device=call.device)
            for chunk in chunks:
                if chunk.key_limit == 0:
                    continue  # every key is forbidden for these rows
                chosen = self._select_chunk(
                    self._run_scores(call, chunk, state),
                    budget,
                    chunk,
                    previous_for_select.query_slice(chunk.start, chunk.end),
                    row_budget,
                )
                indices[:, :, chunk.start : chunk.end, : chosen.shape[-1]] = chosen
        self._spans = None
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous.dtype
        )
        return previous.merge_disjoint(mine)

    def _top_outside_spans(
        self,
        call: CallPlan,
        chunk: QueryChunk,
        state: Any,
        spans: list[tuple[int, int]],
        budget: int,
    ) -> torch.Tensor | None:
        """Decode fast path of :meth:`add_mask`: the previous mask is whole key ranges that
        leave one free range ``[lo, hi)`` (sink + local window, or nothing selected yet), no
        attention mask, one chunk: a top-k of the free slice of the scores (no ``-inf``
        blanking of the spans, which makes ``torch.topk`` several times slower, no copy of
        shared scores). The same picks as the general path; None when it does not apply."""
        k = call.k_len
        free = free_range(spans, k)
        if (
            free is None
            or chunk.attention_mask is not None
            or self.tied_scores
            or type(self)._select is not TopKMasker._select
        ):
            return None
        lo, hi = free
        if self._old_scores:
            scores = self._hook_scores(call, chunk, state)
        else:
            scores = self.key_scores(call, chunk, state)
        if scores.shape[-1] < k:
            raise ValueError(
                f"key_scores returned {scores.shape[-1]} columns, which is not allowed: "
                f"need >= key_limit={k}"
            )
        take = min(budget, k)
        if hi <= lo:  # every key is already selected
            return torch.full((*call.shape[:3], take), -1, dtype=torch.int64, device=call.device)
        part = scores[..., lo:hi]
        part = part.float() if part.dtype != torch.float32 else part
        values, idx = row_top_k(part, min(take, hi - lo))
        if lo:
            idx.add_(lo)
        idx.masked_fill_(values == float("-inf"), -1)  # a key the masker scored -inf
        if idx.shape[-1] < take:
            idx = torch.nn.functional.pad(idx, (0, take - idx.shape[-1]), value=-1)
        return idx

    def _select_keeping_logits(
        self,
        call: CallPlan,
        previous: Mask,
        spans: list[tuple[int, int]] | None,
        take: int,
        chunks: tuple[QueryChunk, ...],
        row_budget: torch.Tensor | None = None,
    ) -> Mask | None:
        """The prefill path of :meth:`add_mask` for exact-logit scores (``logit_scores``):
        per query chunk one ``q . K`` into a reused buffer, the attention mask added, the
        previous keys' logits read (whole ranges by slicing, else by index), a top-k over the
        keys the previous mask leaves; the result is the merged mask (previous keys first,
        as ``merge_disjoint`` lays them out) and the logits of all its entries, kept for the
        attention (:func:`~sah_core.attention.common.remember_index_logits`). The same picks
        as the general path; None (use that path) for a previous mask with weights.
        ``row_budget`` (padding, fractional size): batch row ``b`` keeps its own
        ``row_budget[b]`` picks (one kernel call per batch row, as ``_select_per_row``)."""
        b, h, q, k = call.shape
        device = call.device
        prefix = 0  # keys [0, prefix) are previous ones: the top-k runs on the rest
        if spans is not None:
            ranges = [(max(0, lo), min(k, hi)) for lo, hi in spans]
            ranges = [(lo, hi) for lo, hi in ranges if hi > lo]
            width_prev = sum(hi - lo for lo, hi in ranges)
            prev_idx = None
            if len(ranges) == 1 and ranges[0][0] == 0:
                prefix = ranges[0][1]
        else:
            if previous.representation != "index":
                return None
            prev_idx, prev_w = previous.index_view()
            if prev_w is not None:
                return None
            ranges = []
            width_prev = int(prev_idx.shape[-1])
        budgets = None if row_budget is None else [int(n) for n in row_budget.tolist()]
        if budgets is not None:
            take = min(take, max(budgets, default=0))
        width = width_prev + take
        indices = torch.empty((b, h, q, width), dtype=torch.int64, device=device)
        logits = torch.empty((b, h, q, width), dtype=torch.float32, device=device)
        # a sink [0, prefix) alone before the top-k: the kernel writes its entries per row
        lead_in_kernel = bool(prefix) and device.type == "cpu"
        if ranges and not lead_in_kernel:
            cols = torch.cat([torch.arange(lo, hi, device=device) for lo, hi in ranges])
            indices[..., :width_prev] = cols
        elif prev_idx is not None and width_prev:
            indices[..., :width_prev] = prev_idx
        rows_max = max(chunk.rows for chunk in chunks)
        buffer = call.queries.new_empty(b * h * rows_max * k)
        for chunk in chunks:
            out_idx = indices[:, :, chunk.start : chunk.end]
            out_logits = logits[:, :, chunk.start : chunk.end]
            limit = chunk.key_limit
            if limit == 0:  # every key is forbidden for these rows
                out_logits.fill_(float("-inf"))
                out_idx[..., width_prev:] = -1
                if lead_in_kernel:
                    out_idx[..., :width_prev] = torch.arange(width_prev, device=device)
                continue
            scores = grouped_scores_into(
                chunk.queries, call.keys[:, :, :limit], call.scaling, buffer
            )
            if scores.dtype != torch.float32:
                scores = scores.float()
            mask_chunk = chunk.attention_mask
            forbidden_below = float("-inf")
            if mask_chunk is not None:
                # only the columns the mask touches (the diagonal block of a causal mask)
                first = min(chunk.first_touched, limit)
                scores[..., first:].add_(mask_chunk[..., first:limit])
                forbidden_below = torch.finfo(mask_chunk.dtype).min / 2
            # the previous keys' logits, then those keys out of the top-k
            candidates, offset = scores, 0
            if prev_idx is not None:
                if width_prev:
                    pidx = prev_idx[:, :, chunk.start : chunk.end]
                    inside = (pidx >= 0) & (pidx < limit)
                    picked = scores.gather(-1, pidx.clamp(0, limit - 1))
                    out_logits[..., :width_prev] = picked.masked_fill_(~inside, float("-inf"))
                    exclude_previous(scores, previous.query_slice(chunk.start, chunk.end))
            elif not lead_in_kernel:
                col = 0
                for lo, hi in ranges:
                    top = min(hi, limit)
                    if top > lo:
                        out_logits[..., col : col + top - lo] = scores[..., lo:top]
                    if hi > max(lo, top):  # keys past the chunk's limit: forbidden
                        out_logits[..., col + max(0, top - lo) : col + hi - lo] = float("-inf")
                    col += hi - lo
                if prefix:
                    candidates, offset = scores[..., prefix:], prefix
                else:
                    for lo, hi in ranges:
                        scores[..., lo : min(hi, limit)] = float("-inf")
            if lead_in_kernel:
                candidates, offset = scores[..., prefix:], prefix
            rows = chunk.end - chunk.start
            flat_logits = logits.view(b * h, q, width)[:, chunk.start : chunk.end]
            flat_indices = indices.view(b * h, q, width)[:, chunk.start : chunk.end]
            # one kernel call for all batch rows, or one per batch row with its own budget
            groups = (
                [(0, b, take)]
                if budgets is None
                else [(r, r + 1, n) for r, n in enumerate(budgets)]
            )
            for first, last, wanted in groups:
                heads = slice(first * h, last * h)
                count = min(wanted, take, candidates.shape[-1])
                lead = None
                if lead_in_kernel:
                    lead = (
                        scores[first:last].reshape((last - first) * h, rows, limit),
                        flat_logits[heads, :, :width_prev],
                        flat_indices[heads, :, :width_prev],
                    )
                if count > 0:
                    row_top_k_into(
                        candidates[first:last].reshape((last - first) * h, rows, -1),
                        count,
                        flat_logits[heads, :, width_prev:][..., :count],
                        flat_indices[heads, :, width_prev:][..., :count],
                        offset,
                        forbidden_below,
                        lead,
                    )
                elif lead is not None:
                    copy_lead(*lead)
                if count < take:
                    out_idx[first:last, ..., width_prev + count :] = -1
                    out_logits[first:last, ..., width_prev + count :] = float("-inf")
        mask = Mask.from_index(
            indices, None, call.shape, assume_unique=True, validate=False, dtype=previous.dtype
        )
        remember_index_logits(call, mask, logits, prefix if width_prev == prefix else 0)
        return mask

    def _select_chunk(
        self,
        scores: torch.Tensor,
        budget: int,
        chunk: QueryChunk,
        previous: Mask,
        row_budget: torch.Tensor | None,
    ) -> torch.Tensor:
        """The chunk's picks, cut to the per-row budgets (see :meth:`_select`)."""
        if (
            row_budget is not None
            and not self.tied_scores
            and type(self)._select is TopKMasker._select
        ):
            chosen = self._select_per_row(scores, chunk.key_limit, row_budget, chunk, previous)
            if chosen is not None:
                return chosen
        picked = self._select(
            scores, chunk.key_limit, budget, chunk, previous, *self._select_flags(row_budget)
        )
        return self._cut_to_rows(picked, row_budget)

    def _select_flags(self, row_budget: torch.Tensor | None) -> tuple[bool, ...]:
        # passed only when needed, so subclasses overriding the 5-argument _select keep working
        if row_budget is not None:
            return (self.tied_scores, True)
        return (True,) if self.tied_scores else ()

    def _row_budgets(self, call: CallPlan) -> torch.Tensor | None:
        """Per-row budgets ``[B]`` when padding makes rows differ and the size is a fraction
        (an int count is the same for every row); None otherwise."""
        counts = call.key_counts
        if counts is None or not isinstance(self.config.heavy_size, float):
            return None
        return torch.tensor(
            [self.budget(int(c)) for c in counts.tolist()], device=call.device, dtype=torch.int64
        )

    @staticmethod
    def _cut_to_rows(chosen: torch.Tensor, row_budget: torch.Tensor | None) -> torch.Tensor:
        """Keep the first ``row_budget[b]`` picks of each row (picks are best first)."""
        if row_budget is None:
            return chosen
        ranks = torch.arange(chosen.shape[-1], device=chosen.device)
        return chosen.masked_fill(ranks >= row_budget.view(-1, 1, 1, 1), -1)

    # ------------------------------------------------------------------ hook adapters
    def _run_prepare(self, call: CallPlan) -> Any:
        if not self._old_prepare:
            return self.prepare(call)
        warn_old_hook(type(self), "prepare")
        old: Callable[..., Any] = self.prepare  # the old signature
        return old(
            call.keys,
            call.queries,
            call.values,
            call.attention_mask,
            call.scaling,
            call.sparse_meta_data,
            **call.legacy_kwargs(),
        )

    def _run_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        scores = self._hook_scores(call, chunk, state)
        spans = getattr(self, "_spans", None)
        if spans:
            if scores.dtype != torch.float32:
                scores = scores.float()
            for lo, hi in spans:
                scores[..., lo:hi] = float("-inf")
        return scores

    def _hook_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        if not self._old_scores:
            fresh = self.key_scores(call, chunk, state)
            shared = call.cached_scores(chunk.start, chunk.end)
            if shared is not None and fresh.data_ptr() == shared.data_ptr():
                # the call's shared scores (call.chunk_scores): _select edits in place
                return fresh.float() if fresh.dtype != torch.float32 else fresh.clone()
            return fresh
        warn_old_hook(type(self), "key_scores")
        old: Callable[..., Any] = self.key_scores  # the old signature
        scores: torch.Tensor = old(
            call.keys,
            chunk.queries,
            call.values,
            call.scaling,
            state,
            key_limit=chunk.key_limit,
            query_start=chunk.start,
            attention_mask=chunk.attention_mask,
            sparse_meta_data=call.sparse_meta_data,
            **call.legacy_kwargs(),
        )
        return scores

    @staticmethod
    def _prepare_scores(
        scores: torch.Tensor, limit: int, chunk: QueryChunk, previous: Mask
    ) -> tuple[torch.Tensor, float]:
        """``scores[..., :limit]`` in fp32 with the attention mask added and the previous
        keys at ``-inf`` (in place where possible), and the value at or below which a pick
        is a forbidden key."""
        if scores.shape[-1] < limit:
            raise ValueError(
                f"key_scores returned {scores.shape[-1]} columns, which is not allowed: "
                f"need >= key_limit={limit}"
            )
        if scores.dtype != torch.float32:
            scores = scores.float()
        scores = scores[..., :limit]
        mask_chunk = chunk.attention_mask
        forbidden_below = float("-inf")
        if mask_chunk is not None:
            # Adding the additive mask is one pass; forbidden keys get (near) -inf scores and
            # are recognised after top-k by their value.
            scores = scores.add_(mask_chunk[..., :limit])
            forbidden_below = torch.finfo(mask_chunk.dtype).min / 2
        exclude_previous(scores, previous)
        return scores, forbidden_below

    @staticmethod
    def _select_per_row(
        scores: torch.Tensor,
        limit: int,
        row_budget: torch.Tensor,
        chunk: QueryChunk,
        previous: Mask,
    ) -> torch.Tensor | None:
        """With per-row budgets (padding, fractional size), the CPU kernel's top
        ``row_budget[b]`` of each batch row ``b`` written straight into the padded result:
        exactly each row's selection alone, without ordering the picks. None when the
        kernel does not apply (then :meth:`_select` orders the picks best first)."""
        budgets = [min(int(n), limit) for n in row_budget.tolist()]
        take = max(budgets, default=0)
        if scores.dtype != torch.float32 or not kernel_applies(scores[..., :limit], max(take, 1)):
            return None
        scores, forbidden_below = TopKMasker._prepare_scores(scores, limit, chunk, previous)
        b, h, rows, _ = scores.shape
        indices = torch.full((b, h, rows, take), -1, dtype=torch.int64, device=scores.device)
        values = torch.empty((b, h, rows, take), dtype=torch.float32, device=scores.device)
        for row, budget in enumerate(budgets):
            if budget == 0:
                continue  # (every budget is below limit: kernel_applies checked the largest)
            row_top_k_into(
                scores[row],
                budget,
                values[row, :, :, :budget],
                indices[row, :, :, :budget],
                0,
                forbidden_below,
            )
        return indices

    @staticmethod
    def _select(
        scores: torch.Tensor,
        limit: int,
        budget: int,
        chunk: QueryChunk,
        previous: Mask,
        stable: bool = False,
        best_first: bool = False,
    ) -> torch.Tensor:
        """Top ``budget`` allowed columns of ``scores[..., :limit]`` -> indices (-1 padded);
        ``stable`` breaks ties toward the lower key index (and orders best first),
        ``best_first`` orders the picks by score (per-row budgets cut a prefix)."""
        scores, forbidden_below = TopKMasker._prepare_scores(scores, limit, chunk, previous)
        take = min(budget, limit)
        if stable:
            values, idx = stable_top(scores, take, best_first)
        elif not best_first and kernel_applies(scores, take):
            values, idx = row_top_k(scores, take)  # the CPU kernel: a fraction of torch.topk
        elif scores.device.type == "cpu":
            # torch.topk on int32 is ~2x faster on the CPU than on fp32 (no NaN-aware
            # comparisons); the keys have the scores' order, so the picks are the same
            keys, bound = ordered_int_keys(scores), ordered_int_key(forbidden_below)
            values, idx = keys.topk(take, dim=-1, sorted=best_first)
            return idx.masked_fill_(values <= bound, -1)
        else:
            # unsorted is ~15% cheaper; order matters only when per-row budgets cut a prefix
            values, idx = scores.topk(take, dim=-1, sorted=best_first)
        return idx.masked_fill_(values <= forbidden_below, -1)
