"""Quest masker: query-aware selection of whole pages from per-page key bounds.

Tang, Zhao, Zhu, Xiao, Kasikci and Han, "Quest: Query-Aware Sparsity for Efficient
Long-Context LLM Inference", ICML 2024, arXiv:2406.10774.

The keys are cut into pages of ``page_size`` consecutive keys. Per KV head and page, Quest
keeps the element-wise minimum ``m`` and maximum ``M`` of the page's keys. For a query ``q``
the page score ``sum_d max(q_d * m_d, q_d * M_d)`` is an upper bound of ``q . k`` for every key
``k`` of the page, and Quest attends the best pages **whole**.

Budget: ``heavy_size`` is a token budget (int count, or float fraction of the row's keys) and
buys ``max(3, heavy_size // page_size)`` pages per query row: the authors' rule (their
evaluation code, ``evaluation/quest_attention.py``: the token budget rounded down to whole
pages, never fewer than three pages), so up to ``page_size - 1`` keys fewer than
``heavy_size``, or more when the budget is under three pages. A budget of every key (or
whose pages cover every key) gives a full mask. Pages whose keys are all already selected (sinks,
local window) or all forbidden (future keys in prefill) are not candidates, so the pages go
to keys not yet attended; a page partly covered adds its remaining keys.

Pages are counted in each batch row's own (unpadded) key sequence: with left padding inside a
batch (``CallPlan.key_valid``), padded keys belong to no page and never enter a bound, so a
batched row gets the pages it would get alone.

``label_bits`` < 32 stores the summaries quantised (symmetric, one scale per page and head,
minimum rounded down and maximum rounded up, so the score stays an upper bound); 32 keeps
them exact. The exact page minima/maxima live in the masker's state slot and are extended
with the new keys in decode (min/max merge exactly); quantisation is applied on read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import masked_keys
from sah_core.attention.index_form import kv_cache_rows
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import check_int, known_spans
from sah_core.maskers.key_state_cache import prefix_unchanged
from sah_core.maskers.topk_base import (
    TopKMasker,
    TopKMaskerConfig,
    free_range,
    outside_previous,
)

#: Fewest pages a row buys (the authors' evaluation code: ``max(3, budget // page_size)``).
MIN_PAGES = 3


def pages_for_budget(tokens: int, page_size: int) -> int:
    """Pages a token budget buys: ``max(3, tokens // page_size)``, none for no budget."""
    return max(MIN_PAGES, tokens // page_size) if tokens > 0 else 0


#: Slack (in quantisation steps) of the outward rounding of quantised page bounds.
_SLACK = 1e-3


@dataclasses.dataclass
class QuestTopKMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` token budget per row (rounded down to whole pages, at least
    :data:`MIN_PAGES`); ``page_size`` keys
    per page (>= 1); ``label_bits`` in [2, 32] bits per stored page bound (32 = exact fp32)."""

    type_tag = "quest"

    page_size: int = 16
    label_bits: int = 32
    search_space: ClassVar[sp.SearchSpace] = TopKMaskerConfig.search_space.extend(
        (sp.pages_fit_budget,),
        page_size=sp.Choice((8, 16, 32, 64)),
        label_bits=sp.Choice((4, 8, 16)),
    )

    def validate(self) -> None:
        super().validate()
        check_int(self, "page_size", self.page_size, 1)
        check_int(self, "label_bits", self.label_bits, 2, 32)


def key_pages(call: CallPlan, page_size: int) -> tuple[torch.Tensor, int]:
    """Page of every key ``[B|1, K]`` int64 (-1 at padded keys) and the number of pages
    ``P`` of the longest row."""
    positions = call.key_positions
    if positions is None:
        k = call.k_len
        return (torch.arange(k, device=call.device) // page_size).unsqueeze(0), -(-k // page_size)
    longest = int(positions.amax()) + 1 if positions.numel() else 0
    return torch.where(positions >= 0, positions // page_size, -1), -(-longest // page_size)


_OFFSETS: dict[tuple[int, str], torch.Tensor] = {}


def page_offsets(page_size: int, device: torch.device) -> torch.Tensor:
    """``arange(page_size)`` (cached per device): a page's keys from its first key."""
    key = (page_size, str(device))
    offsets = _OFFSETS.get(key)
    if offsets is None:
        offsets = _OFFSETS.setdefault(key, torch.arange(page_size, device=device))
    return offsets


def regular_pages(key_len: int, page_size: int, device: torch.device) -> torch.Tensor:
    """Page of every key ``[1, K]`` without padding: key ``j`` is in page ``j // page_size``."""
    return (torch.arange(key_len, device=device) // page_size).unsqueeze(0)


def to_slot(pages: torch.Tensor, slot: int) -> torch.Tensor:
    """``pages`` with padded keys (-1) sent to the dump slot ``slot``."""
    return torch.where(pages < 0, slot, pages)


def merge_page_bounds(
    low: torch.Tensor, high: torch.Tensor, keys: torch.Tensor, pages: torch.Tensor
) -> None:
    """Fold ``keys [B, Hkv, n, D]`` into the running page minima/maxima ``[B, Hkv, P+1, D]``
    in place; ``pages [B|1, n]`` is each key's page (the last page is the dump of pads)."""
    b, h, n, d = keys.shape
    if (
        keys.device.type == "cpu"
        and keys.dtype == torch.float32
        and not keys.requires_grad
        and n > 0
        and 0 <= int(pages.min()) <= int(pages.max()) < low.shape[2]  # (numba checks no index)
    ):
        # one pass over the keys (two scatter_reduce_ calls cost ~10 ms each per layer for
        # a 6-row question batch over 2K keys)
        from sah_core.maskers._page_bounds_numba import merge_bounds

        rows, pitch = kv_cache_rows(keys)  # unit-stride rows, also of a reserved-KV view
        merge_bounds(low.numpy(), high.numpy(), rows.numpy(), h, pitch, pages.contiguous().numpy())
        return
    index = pages.view(pages.shape[0], 1, n, 1).expand(b, h, n, d)
    values = keys.float()
    low.scatter_reduce_(2, index, values, reduce="amin", include_self=True)
    high.scatter_reduce_(2, index, values, reduce="amax", include_self=True)


def quantize_bounds(
    low: torch.Tensor, high: torch.Tensor, bits: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` page bounds ``[B, H, P, D]``, quantised outward to ``bits`` (32: the
    exact bounds, not copied)."""
    if bits < 32:
        scale_src = torch.stack([low, high], dim=3).nan_to_num(0.0, 0.0, 0.0)
        scale = scale_src.abs().flatten(-2).amax(-1, keepdim=True)  # one scale per page
        step = scale.clamp_min(torch.finfo(torch.float32).tiny) / float(2 ** (bits - 1) - 1)
        # outward rounding keeps the bound; the slack stops float noise from moving a value
        # that sits exactly on a level (the page's largest |value| always does)
        low = (low / step + _SLACK).floor() * step
        high = (high / step - _SLACK).ceil() * step
    return low, high


class QuestTopKMasker(TopKMasker):
    """Scores each page by Quest's upper bound and keeps the best pages whole."""

    config_type = QuestTopKMaskerConfig
    config: QuestTopKMaskerConfig

    def pages_per_row(self, key_counts: torch.Tensor) -> torch.Tensor:
        """Pages each batch row buys: ``max(3, token budget // page_size)``, the token
        budget resolved against the row's own key count ``[B]``."""
        size = self.config.heavy_size
        counts = key_counts.to(torch.float64)
        if isinstance(size, float):
            tokens = torch.clamp((size * counts).floor(), min=1.0)
        else:
            tokens = torch.full_like(counts, float(size))
        page = self.config.page_size
        pages = torch.clamp(torch.floor(tokens / page), min=MIN_PAGES)
        # a budget of every key buys every page (the last one may be partial)
        pages = torch.where(tokens >= counts, torch.ceil(counts / page), pages)
        return torch.where(tokens > 0, pages, 0.0).to(torch.int64)

    def prepare(self, call: CallPlan) -> Any:
        """``(low, high)`` page bounds of all keys ``[B, Hkv, P, D]`` plus each key's page
        (None without padding: key ``j`` is in page ``j // page_size``) and ``P``; the exact
        bounds are kept in the state slot and extended with the new keys only."""
        size = self.config.page_size
        keys = call.keys
        b, h, k, d = keys.shape
        regular = call.key_positions is None  # no padding: key j is in page j // size
        if regular:
            pages, count = None, -(-k // size)
        else:
            pages, count = key_pages(call, size)
        entry = call.state.get("pages")
        resume = 0
        if (
            isinstance(entry, dict)
            and entry["page_size"] == size
            and prefix_unchanged(keys, entry["key_len"], entry["probe"])
            and (
                entry["pages"] is None
                if pages is None
                else entry["pages"] is not None
                and torch.equal(entry["pages"], pages[:, : entry["key_len"]])
            )
        ):
            resume = entry["key_len"]
            low, high = entry["low"], entry["high"]
            if low.shape[2] < count + 1:  # grow geometrically (decode rarely reallocates)
                capacity = max(count + 1, 2 * low.shape[2])
                grown_low = low.new_full((b, h, capacity, d), float("inf"))
                grown_high = high.new_full((b, h, capacity, d), float("-inf"))
                grown_low[:, :, : low.shape[2] - 1] = low[:, :, :-1]
                grown_high[:, :, : high.shape[2] - 1] = high[:, :, :-1]
                low, high = grown_low, grown_high
        else:
            low = keys.new_full((b, h, count + 1, d), float("inf"), dtype=torch.float32)
            high = keys.new_full((b, h, count + 1, d), float("-inf"), dtype=torch.float32)
        if pages is None and k - resume == 1:  # one new key (decode): fold it into its page
            key = keys[:, :, k - 1]
            key = key if key.dtype == torch.float32 else key.float()
            page_low, page_high = low[:, :, (k - 1) // size], high[:, :, (k - 1) // size]
            torch.minimum(page_low, key, out=page_low)
            torch.maximum(page_high, key, out=page_high)
        elif pages is None and k > resume:
            new_pages = (torch.arange(resume, k, device=keys.device) // size).unsqueeze(0)
            merge_page_bounds(low, high, keys[:, :, resume:], new_pages)
        elif pages is not None:  # the dump page of padded keys is the last slot of the buffer
            merge_page_bounds(
                low, high, keys[:, :, resume:], to_slot(pages[:, resume:], low.shape[2] - 1)
            )
        call.state["pages"] = {
            "page_size": size,
            "low": low,
            "high": high,
            "key_len": k,
            "probe": keys[:, :, k - 1].clone() if k else keys[:, :, :0],
            "pages": pages,
        }
        bounds = quantize_bounds(low[:, :, :count], high[:, :, :count], self.config.label_bits)
        return bounds, pages, count  # pages None: regular (key j in page j // page_size)

    def page_scores(
        self, chunk: QueryChunk, bounds: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Quest's bound of every page for the chunk's queries ``[B, Hq, Qc, P]``
        (``bounds``: the page minima and maxima ``[B, Hkv, P, D]``)."""
        low, high = bounds
        b, hq, qc, d = chunk.queries.shape
        hkv = low.shape[1]
        queries = chunk.queries
        grouped = (queries if queries.dtype == torch.float32 else queries.float()).reshape(
            b, hkv, (hq // hkv) * qc, d
        )
        # max(q m, q M) summed over d = relu(q) . M + min(q, 0) . m
        scores = grouped.clamp_min(0.0) @ high.transpose(-1, -2)
        scores += grouped.clamp_max(0.0) @ low.transpose(-1, -2)
        return scores.view(b, hq, qc, low.shape[2])

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        """Every key gets its page's bound (padded keys -inf); used by tests and plug-ins
        that rank keys, while :meth:`add_mask` selects whole pages."""
        bounds, pages, count = state
        if pages is None:
            pages = regular_pages(call.k_len, self.config.page_size, call.device)
        scores = self.page_scores(chunk, bounds)
        scores = torch.nn.functional.pad(scores, (0, 1), value=float("-inf"))
        index = to_slot(pages, count).view(pages.shape[0], 1, 1, -1)
        index = index.expand(*scores.shape[:3], pages.shape[-1])
        return scores.gather(-1, index)

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        shape = call.shape
        _, _, q, k = shape
        if previous.representation == "full" or q == 0 or k == 0:
            return previous
        valid = call.key_valid
        wanted: torch.Tensor | int
        if valid is None:  # every row has K keys: the page budget is one Python int
            size = self.config.heavy_size
            tokens_int = max(1, math.floor(size * k)) if isinstance(size, float) else int(size)
            wanted = pages_for_budget(tokens_int, self.config.page_size)
            if tokens_int >= k or wanted * self.config.page_size >= k:
                return Mask.full(shape, previous.device, previous.dtype)
            if wanted <= 0:
                return previous
        else:
            counts = valid.sum(-1).to(torch.int64)
            wanted = self.pages_per_row(counts)
            tokens = wanted * self.config.page_size
            if bool((tokens >= counts).all()):
                return Mask.full(shape, previous.device, previous.dtype)
            if int(wanted.max()) <= 0:
                return previous
        state = self.prepare(call)
        spans = known_spans(call, previous)
        chunks = call.query_chunks()
        free = None if spans is None else free_range(spans, k)
        if (
            isinstance(wanted, int)
            and free is not None
            and len(chunks) == 1
            and chunks[0].attention_mask is None
        ):
            mine = Mask.from_index(
                self._pages_in_range(chunks[0], state, wanted, free),
                None,
                shape,
                assume_unique=True,
                validate=False,
                dtype=previous.dtype,
            )
            return previous.merge_disjoint(mine)
        parts = [
            self._select_pages(call, chunk, state, wanted, previous, spans) for chunk in chunks
        ]
        width = max(part.shape[-1] for part in parts)
        pad = torch.nn.functional.pad
        indices = torch.cat([pad(p, (0, width - p.shape[-1]), value=-1) for p in parts], dim=2)
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous.dtype
        )
        return previous.merge_disjoint(mine)

    def _pages_in_range(
        self, chunk: QueryChunk, state: Any, wanted: int, free: tuple[int, int]
    ) -> torch.Tensor:
        """Decode fast path of :meth:`_select_pages`: the eligible keys are one range
        ``[lo, hi)`` (the previous mask is sink + local spans, no attention mask, no padding),
        so the candidate pages are the pages ``lo // page_size .. (hi - 1) // page_size``: a
        top-k of that slice of the page scores, whose pages' keys inside ``[lo, hi)`` are
        kept. The same keys as the general path (page order, -1 padded)."""
        bounds, _, count = state
        lo, hi = free
        size = self.config.page_size
        b, h, rows = (int(x) for x in chunk.queries.shape[:3])
        if hi <= lo or count == 0:
            return torch.full((b, h, rows, 0), -1, dtype=torch.int64, device=chunk.queries.device)
        first, last = lo // size, (hi - 1) // size + 1
        scores = self.page_scores(chunk, bounds)[..., first:last].contiguous()
        best, order = scores.topk(min(wanted, last - first), dim=-1, sorted=False)
        keys = order.add_(first).mul_(size).unsqueeze(-1) + page_offsets(size, order.device)
        drop = (keys < lo) | (keys >= hi) | ~torch.isfinite(best).unsqueeze(-1)
        return keys.masked_fill_(drop, -1).view(b, h, rows, -1)

    def _select_pages(
        self,
        call: CallPlan,
        chunk: QueryChunk,
        state: Any,
        wanted: torch.Tensor | int,
        previous: Mask,
        spans: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Index form ``[B, Hq, Qc, L]`` of the keys of each row's best candidate pages."""
        bounds, pages, count = state
        if pages is None:
            pages = regular_pages(call.k_len, self.config.page_size, call.device)
        b, h, rows = call.batch, call.num_q_heads, chunk.rows
        limit = chunk.key_limit
        if limit == 0 or count == 0:
            return torch.full((b, h, rows, 0), -1, dtype=torch.int64, device=call.device)
        # eligible keys: allowed by the mask and not selected yet
        if spans is not None:  # the previous keys are whole ranges: leave them out by slicing
            free = torch.ones(limit, dtype=torch.bool, device=call.device)
            for lo, hi in spans:
                free[lo:hi] = False
            eligible = free.expand(b, h, rows, limit)
        else:
            eligible = outside_previous(
                (b, h, rows, limit), previous.query_slice(chunk.start, chunk.end)
            )
        if chunk.attention_mask is not None:
            eligible = eligible & ~masked_keys(chunk.attention_mask[..., :limit])
        slots = to_slot(pages[:, :limit], count)
        kernels = _page_kernels() if eligible.device.type == "cpu" else None
        candidate = torch.zeros((b, h, rows, count + 1), dtype=torch.bool, device=call.device)
        if kernels is not None:  # one pass over the keys, no [B, H, Q, L] index tensor
            kernels[0](eligible.numpy(), slots.numpy(), candidate.numpy())
        else:
            key_page = slots.view(pages.shape[0], 1, 1, limit).expand(b, h, rows, limit)
            candidate.scatter_reduce_(-1, key_page, eligible, reduce="amax", include_self=True)
        scores = self.page_scores(chunk, bounds)
        scores = scores.masked_fill(~candidate[..., :count], float("-inf"))
        if isinstance(wanted, int):
            take = min(wanted, count)
            best, order = scores.topk(take, dim=-1, sorted=True)
            chosen_ok = torch.isfinite(best)
        else:
            take = min(int(wanted.max()), count)
            best, order = scores.topk(take, dim=-1, sorted=True)
            rank = torch.arange(take, device=call.device)
            chosen_ok = torch.isfinite(best) & (rank < wanted.view(b, 1, 1, 1))
        if kernels is not None:
            packed = kernels[1](
                eligible.numpy(), slots.numpy(), order.numpy(), chosen_ok.numpy(), count + 1
            )
            return torch.from_numpy(packed)
        chosen = torch.zeros((b, h, rows, count + 1), dtype=torch.bool, device=call.device)
        chosen.scatter_(-1, order, chosen_ok)
        keep = chosen.gather(-1, key_page) & eligible
        return pack_keys(keep)


@functools.lru_cache(maxsize=1)
def _page_kernels() -> tuple[Any, Any]:
    """The CPU kernels of :meth:`QuestTopKMasker._select_pages` (numba is slow to import)."""
    from sah_core.maskers._page_select_numba import candidate_pages, chosen_page_keys

    return candidate_pages, chosen_page_keys


def pack_keys(keep: torch.Tensor) -> torch.Tensor:
    """Bool ``[..., K]`` -> ascending kept indices ``[..., L]`` (-1 padded)."""
    key_len = keep.shape[-1]
    width = int(keep.sum(-1).max()) if keep.numel() else 0
    positions = torch.arange(key_len, device=keep.device)
    keyed = torch.where(keep, positions, key_len)
    packed = keyed.topk(width, dim=-1, largest=False, sorted=True).values
    return torch.where(packed < key_len, packed, -1)
