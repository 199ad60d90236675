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
from abc import abstractmethod
from typing import Any

import torch

from sah_core.attention.common import (
    attended_key_limit,
    normalize_attention_mask,
    query_chunk_size,
)
from sah_core.mask import Mask
from sah_core.maskers.base import (
    MaskerConfig,
    ResearchMasker,
    check_selection_size,
    resolve_size,
)


@dataclasses.dataclass
class TopKMaskerConfig(MaskerConfig):
    """Config of a top-k masker: ``heavy_size`` keys per row (int count or float fraction)."""

    heavy_size: int | float = 0

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


class TopKMasker(ResearchMasker):
    """Base of the top-k maskers (see module doc). Override ``key_scores`` only."""

    config: TopKMaskerConfig

    def budget(self, key_len: int) -> int:
        """Keys to select per row for a key length (default: ``heavy_size`` resolved)."""
        return resolve_size(self.config.heavy_size, key_len)

    def prepare(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        sparse_meta_data: dict[Any, Any],
        **kwargs: Any,
    ) -> Any:
        """Once-per-call work shared by all query chunks; the result reaches ``key_scores``
        as ``state``. Default: nothing."""
        return None

    @abstractmethod
    def key_scores(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        state: Any,
        *,
        key_limit: int,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Score of every key for a chunk of queries ``[B, Hq, Qc, D]`` -> ``[B, Hq, Qc, K']``.

        Higher = more important; NaN is not allowed. ``K'`` must be ``>= key_limit``: keys
        at or beyond ``key_limit`` are forbidden for every row of the chunk, so scoring only
        ``keys[:, :, :key_limit]`` is enough (and faster). Columns beyond ``K'`` are never
        selected. The returned tensor may be modified by the base (return a fresh one).
        ``kwargs`` carries ``query_start`` (first row of the chunk), ``attention_mask`` (the
        chunk's additive mask or None), ``sparse_meta_data`` and the call's kwargs.
        """

    def add_mask(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        dropout: float,
        sparse_meta_data: dict[Any, Any],
        previous_mask: Mask,
        **kwargs: Any,
    ) -> Mask:
        shape = self.mask_shape(queries, keys)
        b, h, q, k = shape
        if previous_mask.representation == "full":
            return Mask.full(shape, previous_mask.device, previous_mask.dtype)
        budget = self.budget(k)
        if budget >= k:
            return Mask.full(shape, previous_mask.device, previous_mask.dtype)
        if budget <= 0 or q == 0:
            return previous_mask
        additive = normalize_attention_mask(attention_mask, k)
        state = self.prepare(keys, queries, values, additive, scaling, sparse_meta_data, **kwargs)
        chunk = query_chunk_size(kwargs, b * h * k)
        kw = {key: v for key, v in kwargs.items() if key not in ("attention_mask", "query_start")}
        take = min(budget, k)
        indices = torch.full((b, h, q, take), -1, dtype=torch.int64, device=queries.device)
        for start in range(0, q, chunk):
            end = min(q, start + chunk)
            mask_chunk = None if additive is None else additive[:, :, start:end]
            limit = attended_key_limit(mask_chunk, k)
            if limit == 0:
                continue  # every key is forbidden for these rows
            scores = self.key_scores(
                keys,
                queries[:, :, start:end],
                values,
                scaling,
                state,
                key_limit=limit,
                query_start=start,
                attention_mask=mask_chunk,
                sparse_meta_data=sparse_meta_data,
                **kw,
            )
            chosen = self._select(
                scores, limit, budget, mask_chunk, previous_mask.query_slice(start, end)
            )
            indices[:, :, start:end, : chosen.shape[-1]] = chosen
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous_mask.dtype
        )
        return previous_mask.merge_disjoint(mine)

    @staticmethod
    def _select(
        scores: torch.Tensor,
        limit: int,
        budget: int,
        mask_chunk: torch.Tensor | None,
        previous: Mask,
    ) -> torch.Tensor:
        """Top ``budget`` allowed columns of ``scores[..., :limit]`` -> indices (-1 padded)."""
        if scores.shape[-1] < limit:
            raise ValueError(
                f"key_scores returned {scores.shape[-1]} columns, which is not allowed: "
                f"need >= key_limit={limit}"
            )
        if scores.dtype != torch.float32:
            scores = scores.float()
        scores = scores[..., :limit]
        forbidden_below = float("-inf")
        if mask_chunk is not None:
            # Adding the additive mask is one pass; forbidden keys get (near) -inf scores and
            # are recognised after top-k by their value.
            scores = scores.add_(mask_chunk[..., :limit])
            forbidden_below = torch.finfo(mask_chunk.dtype).min / 2
        exclude_previous(scores, previous)
        take = min(budget, limit)
        values, idx = scores.topk(take, dim=-1, sorted=True)
        return idx.masked_fill_(values <= forbidden_below, -1)
