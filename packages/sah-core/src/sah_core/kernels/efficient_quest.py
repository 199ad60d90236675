"""Efficient Quest: query-aware page selection bound to the sparse decode kernel.

Quest (Tang, Zhao, Zhu, Xiao, Kasikci and Han, "Quest: Query-Aware Sparsity for Efficient
Long-Context LLM Inference", ICML 2024) keeps, per KV head and page of ``page_size``
consecutive keys, the element-wise minimum and maximum key. For a query ``q`` the score
``sum_d max(q_d * min_d, q_d * max_d)`` upper-bounds ``q . k`` for every key of the page; the
pages with the highest bounds are attended in full. Here, as in common practice, the first
``sink_tokens`` and the last ``local_tokens`` visible keys are always kept and the page budget
is spent on the remaining keys; the selection becomes index lists for
:func:`sah_core.kernels.dispatch.sparse_decode_attention` without any dense mask.

The bound is computed as ``relu(q) . max + min(q, 0) . min`` (two small matrix products), and
page summaries are kept incrementally: after a decode step only the last, partial page is
recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from sah_core.kernels.dispatch import KernelBackend
from sah_core.kernels.efficient_attention import EfficientAttention
from sah_core.maskers.quest import pages_for_budget

GroupReduction = Literal["none", "max", "sum"]
_GROUP_REDUCTIONS: tuple[str, ...] = ("none", "max", "sum")
STATE_KEY = "quest_page_summaries"


def resolve_size(name: str, size: int | float, length: int) -> int:
    """``int`` = absolute count, ``float`` in (0, 1] = fraction of ``length`` (rounded up)."""
    if isinstance(size, bool):
        raise ValueError(f"{name} is {size!r}; must be an int >= 0 or a float in (0, 1]")
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"{name} is {size}; must be an int >= 0 or a float in (0, 1]")
        return size
    if isinstance(size, float) and 0.0 < size <= 1.0:
        return int(-(-size * length // 1))
    raise ValueError(f"{name} is {size!r}; must be an int >= 0 or a float in (0, 1]")


@dataclass(frozen=True)
class QuestEfficientConfig:
    """Settings of the efficient Quest path.

    Attributes:
        page_size: keys per page (Quest uses 16).
        token_budget: keys chosen through pages, beyond sinks and the local window; rounded up
            to whole pages. ``int`` = count, ``float`` = fraction of the key length.
        sink_tokens: first keys always attended (``int`` count or ``float`` fraction).
        local_tokens: most recent visible keys always attended (``int`` or ``float``).
        group_reduction: ``"none"`` selects pages per query head (Quest as published);
            ``"max"``/``"sum"`` combine the bounds of a KV head's query-head group and select
            once per KV head, which lets the kernel load each page once per group (GQA).
    """

    page_size: int = 16
    token_budget: int | float = 1024
    sink_tokens: int | float = 4
    local_tokens: int | float = 64
    group_reduction: GroupReduction = "none"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.page_size, int)
            or isinstance(self.page_size, bool)
            or self.page_size < 1
        ):
            raise ValueError(f"page_size is {self.page_size!r}; must be an int >= 1")
        for name in ("token_budget", "sink_tokens", "local_tokens"):
            resolve_size(name, getattr(self, name), 1)
        if self.group_reduction not in _GROUP_REDUCTIONS:
            raise ValueError(
                f"group_reduction is {self.group_reduction!r}; allowed: "
                f"{', '.join(_GROUP_REDUCTIONS)}"
            )


class QuestPageSummaries:
    """Per-page element-wise key minimum and maximum ``[B, Hkv, pages, D]``, kept incrementally.

    Assumes an append-only KV cache: keys already summarised do not change between calls. A
    shorter key tensor than last time (a new request or a truncated cache) rebuilds from scratch.
    """

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.num_tokens = 0
        self._key_min: torch.Tensor | None = None
        self._key_max: torch.Tensor | None = None

    @property
    def num_pages(self) -> int:
        return -(-self.num_tokens // self.page_size)

    @property
    def key_min(self) -> torch.Tensor:
        """``[B, Hkv, pages, D]`` element-wise minimum of each page's keys."""
        if self._key_min is None:
            raise ValueError("page summaries are empty: call update(keys) first")
        return self._key_min[:, :, : self.num_pages]

    @property
    def key_max(self) -> torch.Tensor:
        """``[B, Hkv, pages, D]`` element-wise maximum of each page's keys."""
        if self._key_max is None:
            raise ValueError("page summaries are empty: call update(keys) first")
        return self._key_max[:, :, : self.num_pages]

    def update(self, keys: torch.Tensor, key_valid: torch.Tensor | None = None) -> None:
        """Bring the summaries up to ``keys [B, Hkv, K, D]``, recomputing only changed pages.

        ``key_valid`` (bool ``[B, K]``, None = all valid) marks padded keys (left padding of a
        batched request) False: they never enter a page's minimum or maximum, so a padded
        batch row gets the bounds it gets alone; a page of padding only has min > max and is
        never selected."""
        batch, heads, kv_len, head_dim = keys.shape
        if key_valid is not None and tuple(key_valid.shape) != (batch, kv_len):
            raise ValueError(
                f"key_valid.shape={tuple(key_valid.shape)} is not allowed: use [B, K] = "
                f"[{batch}, {kv_len}]"
            )
        stale = (
            self._key_min is None
            or kv_len < self.num_tokens
            or self._key_min.shape[:2] != (batch, heads)
            or self._key_min.shape[-1] != head_dim
            or self._key_min.device != keys.device
            or self._key_min.dtype != keys.dtype
        )
        if stale:
            self.num_tokens = 0
        needed_pages = -(-kv_len // self.page_size)
        if stale or self._key_min is None or self._key_min.shape[2] < needed_pages:
            # Grow geometrically so decode steps rarely reallocate.
            capacity = max(needed_pages, 2 * (0 if stale else self.num_pages), 1)
            new_min = keys.new_empty((batch, heads, capacity, head_dim))
            new_max = keys.new_empty((batch, heads, capacity, head_dim))
            if not stale and self._key_min is not None and self._key_max is not None:
                new_min[:, :, : self.num_pages] = self._key_min[:, :, : self.num_pages]
                new_max[:, :, : self.num_pages] = self._key_max[:, :, : self.num_pages]
            self._key_min, self._key_max = new_min, new_max
        assert self._key_min is not None and self._key_max is not None
        first_page = self.num_tokens // self.page_size
        if kv_len > first_page * self.page_size:
            tail = keys[:, :, first_page * self.page_size : kv_len]
            pad = (-tail.shape[2]) % self.page_size
            pages = tail.shape[2] // self.page_size + (1 if pad else 0)
            low_src, high_src = tail, tail
            if key_valid is not None:
                valid = key_valid[:, None, first_page * self.page_size : kv_len, None]
                low_src = torch.where(valid, tail, float("inf"))
                high_src = torch.where(valid, tail, float("-inf"))
            # Pad the last page with +inf / -inf so padding never wins a min / max.
            low = torch.nn.functional.pad(low_src, (0, 0, 0, pad), value=float("inf"))
            high = torch.nn.functional.pad(high_src, (0, 0, 0, pad), value=float("-inf"))
            shape = (batch, heads, pages, self.page_size, head_dim)
            self._key_min[:, :, first_page : first_page + pages] = low.view(shape).amin(dim=3)
            self._key_max[:, :, first_page : first_page + pages] = high.view(shape).amax(dim=3)
        self.num_tokens = kv_len


def quest_page_upper_bounds(
    queries: torch.Tensor, key_min: torch.Tensor, key_max: torch.Tensor
) -> torch.Tensor:
    """Quest's bound ``sum_d max(q_d min_d, q_d max_d)``: ``[B, Hkv, G, Q, pages]`` in fp32."""
    batch, num_q_heads, q_len, _ = queries.shape
    num_kv_heads = key_min.shape[1]
    grouped = queries.float().view(batch, num_kv_heads, num_q_heads // num_kv_heads, q_len, -1)
    positive, negative = grouped.clamp(min=0), grouped.clamp(max=0)
    return torch.einsum("bhgqd,bhpd->bhgqp", positive, key_max.float()) + torch.einsum(
        "bhgqd,bhpd->bhgqp", negative, key_min.float()
    )


def quest_select_indices(
    queries: torch.Tensor,
    summaries: QuestPageSummaries,
    config: QuestEfficientConfig,
    key_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quest selection as index lists, causal for each of the ``Q`` query rows.

    Query row ``r`` sits at position ``K - Q + r`` and sees ``n_r = K - Q + r + 1`` keys. It
    keeps keys ``[0, sink)``, ``[n_r - local, n_r)`` and the tokens (``< n_r``, outside those two
    ranges) of its ``max(3, budget // page_size)`` best pages (the authors' page rule, as
    :class:`~sah_core.maskers.quest.QuestTopKMasker`) among pages not already covered.
    Page bounds come from the summaries of all ``K`` keys (a page straddling a query's position
    is scored with its later keys too, which keeps the bound an upper bound), and ties between
    equal bounds go to whichever page ``torch.topk`` returns first.

    ``key_valid`` (bool ``[B, K]``; the one the summaries were updated with) drops padded
    keys from the selection; pages holding only padded keys are never candidates.

    Returns:
        ``indices`` int64 ``[B, Hq, Q, L]`` (or ``[B, Hkv, Q, L]`` when ``group_reduction`` is
        not "none"), ascending with -1 padding last, and ``weights`` (1.0 / 0.0) alike.
    """
    kv_len, page_size = summaries.num_tokens, config.page_size
    if summaries.page_size != page_size:
        raise ValueError(
            f"summaries.page_size is {summaries.page_size}; must equal config.page_size {page_size}"
        )
    q_len = queries.shape[2]
    if q_len > kv_len:
        raise ValueError(f"queries q_len {q_len} exceeds the summarised key length {kv_len}")
    device = queries.device
    sink = resolve_size("sink_tokens", config.sink_tokens, kv_len)
    local = resolve_size("local_tokens", config.local_tokens, kv_len)
    budget = resolve_size("token_budget", config.token_budget, kv_len)
    num_pages = summaries.num_pages

    bounds = quest_page_upper_bounds(queries, summaries.key_min, summaries.key_max)
    if key_valid is not None:
        # a page of padding only keeps min = +inf > max = -inf (its bound is not finite)
        empty = (summaries.key_min > summaries.key_max).any(-1)  # [B, Hkv, pages]
        bounds = bounds.masked_fill(empty[:, :, None, None, :], float("-inf"))
    if config.group_reduction == "max":
        bounds = bounds.amax(dim=2)
    elif config.group_reduction == "sum":
        bounds = bounds.sum(dim=2)
    else:
        bounds = bounds.flatten(1, 2)
    # bounds: [B, H, Q, pages] with H = Hq ("none") or Hkv.

    visible = torch.arange(q_len, device=device) + (kv_len - q_len) + 1  # n_r per query row
    local_start = torch.clamp(visible - local, min=0)
    page_start = torch.arange(num_pages, device=device) * page_size
    page_end = torch.minimum(page_start + page_size, visible[:, None])  # [Q, pages]
    covered = (
        (page_end <= sink)
        | (page_start[None, :] >= local_start[:, None])
        | (sink >= local_start)[:, None]
    )
    candidate = (page_start[None, :] < visible[:, None]) & ~covered
    bounds = bounds.masked_fill(~candidate, float("-inf"))

    pick = min(pages_for_budget(budget, page_size), num_pages)
    token_lists = []
    if sink > 0:
        sink_tokens = torch.arange(sink, device=device)
        token_lists.append(
            torch.where(sink_tokens[None, :] < visible[:, None], sink_tokens, -1).expand(
                *bounds.shape[:2], -1, -1
            )
        )
    if local > 0:
        local_tokens = local_start[:, None] + torch.arange(local, device=device)
        keep = (local_tokens < visible[:, None]) & (local_tokens >= sink)
        token_lists.append(torch.where(keep, local_tokens, -1).expand(*bounds.shape[:2], -1, -1))
    if pick > 0:
        top_bounds, top_pages = bounds.topk(pick, dim=-1)
        page_tokens = top_pages.unsqueeze(-1) * page_size + torch.arange(page_size, device=device)
        row_visible = visible.view(1, 1, q_len, 1, 1)
        row_local_start = local_start.view(1, 1, q_len, 1, 1)
        keep = (
            torch.isfinite(top_bounds).unsqueeze(-1)
            & (page_tokens < row_visible)
            & (page_tokens >= sink)
            & (page_tokens < row_local_start)
        )
        token_lists.append(torch.where(keep, page_tokens, -1).flatten(-2))
    if not token_lists:
        empty = torch.full((*bounds.shape[:3], 1), -1, dtype=torch.int64, device=device)
        return empty, torch.zeros(empty.shape, dtype=torch.float32, device=device)
    tokens = torch.cat(token_lists, dim=-1)
    # Ascending order, padding last: friendlier memory access and the usual index-form layout.
    tokens = torch.where(tokens < 0, kv_len, tokens).sort(dim=-1).values
    selected = tokens < kv_len
    if key_valid is not None:
        b, h, q, _ = tokens.shape
        valid = key_valid.to(device)[:, None, None, :].expand(b, h, q, kv_len)
        selected &= valid.gather(-1, tokens.clamp(max=kv_len - 1))
    indices = torch.where(selected, tokens, -1)
    return indices, selected.to(torch.float32)


class EfficientQuestAttention(EfficientAttention):
    """Quest page selection + sparse decode kernel, with page summaries kept in ``state``."""

    def __init__(self, config: QuestEfficientConfig, backend: KernelBackend = "auto") -> None:
        super().__init__(backend)
        self.config = config

    def summaries(
        self, keys: torch.Tensor, state: dict[str, Any], key_valid: torch.Tensor | None = None
    ) -> QuestPageSummaries:
        """The up-to-date page summaries for ``keys``, created in ``state`` on first use."""
        summaries = state.get(STATE_KEY)
        if not isinstance(summaries, QuestPageSummaries) or (
            summaries.page_size != self.config.page_size
        ):
            summaries = QuestPageSummaries(self.config.page_size)
            state[STATE_KEY] = summaries
        summaries.update(keys, key_valid)
        return summaries

    def select_indices(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        state: dict[str, Any],
        key_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quest index lists for ``queries`` over ``keys``; see :func:`quest_select_indices`
        (``key_valid`` bool ``[B, K]``: padded keys False)."""
        summaries = self.summaries(keys, state, key_valid)
        return quest_select_indices(queries, summaries, self.config, key_valid)
