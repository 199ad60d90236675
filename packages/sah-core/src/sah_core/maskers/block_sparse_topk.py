"""Block-sparse top-k prefill over pooled block scores (FlexPrefill / XAttention style).

* Mean pooling (FlexPrefill's query-aware estimate): Lai et al., "FlexPrefill: A
  Context-Aware Sparse Attention Mechanism for Efficient Long-Sequence Inference", ICLR 2025,
  arXiv:2502.20766 -- the mean query of each query block against the mean key of each key
  block, softmax over the causally visible key blocks.
* Antidiagonal scoring: Xu et al., "XAttention: Block Sparse Attention with Antidiagonal
  Scoring", ICML 2025, arXiv:2503.16428 -- queries and keys regrouped with stride ``S``
  (query ``m*S + S-1-t`` with key ``n*S + t``, ``t < S``), so one product sums an antidiagonal
  of each ``S x S`` sub-block; scaled by ``1 / S``, softmax over the regrouped keys (causal at
  group level), summed per ``block_size`` tile.

Selection per query block: with ``threshold`` the highest-scoring tiles are kept until their
share of the row's mass reaches it (a tile is kept while the mass before it is below the
threshold, as XAttention's selection); with ``block_budget`` a fixed number of tiles. The
diagonal tile(s) (and, with ``keep_first``, key block 0) are always kept and ranked first;
tiles past causality are never kept. The result is a block layout
(:class:`~sah_core.block_mask.BlockSparseMask`). Not included: FlexPrefill's per-head switch to
a vertical-slash pattern (use :mod:`~sah_core.maskers.vertical_slash` for that pattern).

Batches: the tile grid starts at each sequence's first key, so in a left-padded batch (keys
``[context | pads | question]`` of unequal rows) the grid, the pooled scores and a fractional
budget differ per row. A call with padded keys is therefore selected row by row on each row's
own valid keys and real query rows -- exactly the row run alone -- and the rows' picks are
materialised as one dense mask (pads never enter a pooled score or a selection); unpadded
calls (a context prefill) keep the block layout.
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.attention.common import grouped_scores
from sah_core.block_mask import (
    BlockSparseMask,
    merge_into,
    num_blocks,
    require_last_positions,
    row_by_row,
)
from sah_core.call_plan import CallPlan
from sah_core.mask import Mask
from sah_core.maskers.base import (
    MaskerConfig,
    ResearchMasker,
    check_choice,
    check_float,
    check_int,
    check_selection_size,
    resolve_size,
)

SCORINGS = ("mean", "antidiagonal")


@dataclasses.dataclass
class BlockSparseTopKMaskerConfig(MaskerConfig):
    """Tiles of ``block_size``; ``scoring`` ``"mean"`` or ``"antidiagonal"`` (``stride`` S,
    dividing ``block_size``); keep by cumulative mass ``threshold`` in (0, 1] or, when
    ``threshold`` is None, ``block_budget`` key blocks per query block (int count or float
    fraction of the key blocks); ``keep_first`` also keeps key block 0 (attention sink)."""

    type_tag = "block_sparse_topk"

    block_size: int = 64
    scoring: str = "mean"
    stride: int = 8
    threshold: float | None = 0.9
    block_budget: int | float | None = None
    keep_first: bool = True

    def validate(self) -> None:
        super().validate()
        check_int(self, "block_size", self.block_size, 1, 4096)
        check_choice(self, "scoring", self.scoring, SCORINGS)
        check_int(self, "stride", self.stride, 1, 4096)
        if self.scoring == "antidiagonal" and self.block_size % self.stride:
            raise ValueError(
                f"BlockSparseTopKMaskerConfig.stride={self.stride!r} is not allowed: with "
                f"scoring='antidiagonal' it must divide block_size={self.block_size}"
            )
        if (self.threshold is None) == (self.block_budget is None):
            raise ValueError(
                f"BlockSparseTopKMaskerConfig.threshold={self.threshold!r} with block_budget="
                f"{self.block_budget!r} is not allowed: set exactly one of the two"
            )
        if self.threshold is not None:
            check_float(self, "threshold", self.threshold, 0.0, 1.0, low_inclusive=False)
        if self.block_budget is not None:
            check_selection_size(self, "block_budget", self.block_budget)
        if not isinstance(self.keep_first, bool):
            raise ValueError(
                f"BlockSparseTopKMaskerConfig.keep_first={self.keep_first!r} is not allowed: "
                "use True or False"
            )


def block_geometry(call: CallPlan, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first_pos, last_pos)`` int64 ``[nQb]``: key positions of each query block's first
    and last row (the queries are the last Q keys)."""
    _b, _hq, q, k = call.shape
    first_row = torch.arange(num_blocks(q, bs), device=call.device) * bs
    last_row = torch.clamp(first_row + bs - 1, max=q - 1)
    return (k - q) + first_row, (k - q) + last_row


def mean_pooled_scores(call: CallPlan, bs: int) -> torch.Tensor:
    """FlexPrefill's estimate ``[B, Hq, nQb, nKb]``: softmax over visible key blocks of
    ``mean(q_block) . mean(k_block) * scaling`` (invisible blocks 0). The call's keys are all
    valid (padded batches are scored row by row: :meth:`BlockSparseTopKMasker.padded_mask`)."""
    b, hq, q, k = call.shape
    nqb, nkb = num_blocks(q, bs), num_blocks(k, bs)
    d = call.head_dim
    pad_q = nqb * bs - q
    queries = torch.nn.functional.pad(call.queries.float(), (0, 0, 0, pad_q))
    rows = torch.clamp(q - torch.arange(nqb, device=call.device) * bs, max=bs)
    pooled_q = queries.view(b, hq, nqb, bs, d).sum(-2) / rows.view(1, 1, -1, 1)
    keys = torch.nn.functional.pad(call.keys.float(), (0, 0, 0, nkb * bs - k))
    counts = torch.clamp(k - torch.arange(nkb, device=call.device) * bs, max=bs)
    pooled_k = keys.view(b, call.num_kv_heads, nkb, bs, d).sum(-2) / counts.view(1, 1, -1, 1)
    logits = grouped_scores(pooled_q, pooled_k, call.scaling)  # [B, Hq, nQb, nKb]
    _, last_pos = block_geometry(call, bs)
    hidden = torch.arange(nkb, device=call.device) * bs > last_pos.unsqueeze(-1)
    logits = logits.masked_fill(hidden, float("-inf"))
    return torch.softmax(logits, dim=-1).nan_to_num_(0.0)


def antidiagonal_scores(call: CallPlan, bs: int, stride: int) -> torch.Tensor:
    """XAttention's estimate ``[B, Hq, nQb, nKb]``: per tile, the regrouped-softmax mass of its
    antidiagonal sums, normalised per query block to sum to 1 over visible tiles (all keys
    valid, as for :func:`mean_pooled_scores`)."""
    b, hq, q, k = call.shape
    nqb, nkb = num_blocks(q, bs), num_blocks(k, bs)
    s, d = stride, call.head_dim
    queries = torch.nn.functional.pad(call.queries.float(), (0, 0, 0, nqb * bs - q))
    keys = torch.nn.functional.pad(call.keys.float(), (0, 0, 0, nkb * bs - k))
    mq, mk = nqb * bs // s, nkb * bs // s
    # group m of queries: rows m*S + S-1-t ; group n of keys: rows n*S + t  (t = 0..S-1)
    grouped_q = queries.view(b, hq, mq, s, d).flip(-2).reshape(b, hq, mq, s * d)
    grouped_k = keys.view(b, call.num_kv_heads, mk, s, d).reshape(b, call.num_kv_heads, mk, s * d)
    logits = grouped_scores(grouped_q, grouped_k, call.scaling / s)  # [B, Hq, Mq, Mk]
    group_last = (k - q) + torch.arange(mq, device=call.device) * s + s - 1
    key_start = torch.arange(mk, device=call.device) * s
    hidden = (key_start > group_last.unsqueeze(-1)) | (key_start >= k)
    logits = logits.masked_fill(hidden, float("-inf"))
    probs = torch.softmax(logits, dim=-1).nan_to_num_(0.0)
    real_rows = (torch.arange(mq, device=call.device) * s) < q
    probs = probs * real_rows.view(1, 1, -1, 1)
    tile = probs.view(b, hq, nqb, bs // s, nkb, bs // s).sum((-1, -3))
    return tile / tile.sum(-1, keepdim=True).clamp(min=1e-30)


class BlockSparseTopKMasker(ResearchMasker):
    """Pooled block scores -> kept tiles per query block (see the module doc)."""

    config_type = BlockSparseTopKMaskerConfig
    config: BlockSparseTopKMaskerConfig

    def block_scores(self, call: CallPlan) -> torch.Tensor:
        """``[B, Hq, nQb, nKb]`` estimated attention mass per tile (rows sum to 1)."""
        cfg = self.config
        if cfg.scoring == "antidiagonal":
            return antidiagonal_scores(call, cfg.block_size, cfg.stride)
        return mean_pooled_scores(call, cfg.block_size)

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        cfg = self.config
        _b, _hq, q, k = call.shape
        if previous.representation == "full" or q == 0 or k == 0:
            return previous
        require_last_positions(call, type(self).__name__)
        if cfg.threshold is not None and cfg.threshold >= 1.0:
            return Mask.full(call.shape, previous.device, previous.dtype)  # every visible tile
        if call.key_valid is not None:
            return self.padded_mask(call, previous)
        nkb = num_blocks(k, cfg.block_size)
        budget = None if cfg.block_budget is None else resolve_size(cfg.block_budget, nkb)
        if budget is not None and budget >= nkb:
            return Mask.full(call.shape, previous.device, previous.dtype)  # every visible tile
        if budget == 0:
            return previous
        mine = BlockSparseMask.from_layout(
            call.shape, self.select_tiles(call, budget), cfg.block_size, dtype=previous.dtype
        )
        return merge_into(previous, mine)

    def select_tiles(self, call: CallPlan, budget: int | None) -> torch.Tensor:
        """Bool ``[B, Hq, nQb, nKb]`` kept tiles of an unpadded call (``budget`` tiles per
        query block, or by ``threshold`` when None)."""
        cfg = self.config
        bs = cfg.block_size
        nkb = num_blocks(call.k_len, bs)
        scores = self.block_scores(call)
        first_pos, last_pos = block_geometry(call, bs)
        key_block = torch.arange(nkb, device=call.device)
        visible = key_block * bs <= last_pos.unsqueeze(-1)  # [nQb, nKb]
        forced = (key_block >= (first_pos // bs).unsqueeze(-1)) & visible
        if cfg.keep_first:
            forced = forced | (key_block == 0)
        ranked = torch.where(forced, float("inf"), scores).masked_fill(~visible, float("-inf"))
        order = ranked.argsort(dim=-1, descending=True, stable=True)
        if budget is not None:
            keep_sorted = torch.arange(nkb, device=call.device) < budget
            keep_sorted = keep_sorted.expand(order.shape)
        else:
            assert cfg.threshold is not None
            mass = scores.gather(-1, order)
            before = mass.cumsum(-1) - mass  # mass of the better-ranked tiles
            keep_sorted = before < cfg.threshold
        tiles = torch.zeros_like(order, dtype=torch.bool).scatter_(-1, order, keep_sorted)
        return (tiles | forced) & visible

    def padded_mask(self, call: CallPlan, previous: Mask) -> Mask:
        """A call with padded keys: each row selected alone (see the module doc)."""
        return row_by_row(call, previous, self.add_mask, type(self).__name__)
