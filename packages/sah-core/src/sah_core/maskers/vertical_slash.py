"""MInference vertical-slash sparse prefill.

Jiang et al., "MInference 1.0: Accelerating Pre-filling for Long-Context LLMs via Dynamic
Sparse Attention", NeurIPS 2024, arXiv:2407.02490.

Per head, the attention of the last ``last_q`` queries of the call (64 in the paper) over all
keys is computed exactly (softmax in fp32, causal). The **vertical** score of key ``j`` is the
sum of those probabilities over the ``last_q`` rows; the **slash** score of offset ``s`` is the
sum along the diagonal ``key = query position - s``. The first 30 keys (vertical) and the
100 offsets nearest the diagonal (slash) are always kept, as in the official estimate; the
budgets are clamped to ``max(vertical_size, 30)`` and ``max(slash_size, 50)`` like the
official code. Every query then attends the selected columns and, along each selected offset,
the key at ``position - s``; causal.

The layout is emitted as a block mask (:class:`~sah_core.block_mask.BlockSparseMask`): verticals
as exact single columns per query block, slashes as the ``block_size`` tiles each offset
crosses within each query block (MInference's kernel likewise widens a slash to a
``block_size``-key range per ``block_size``-row query block), so the attended set contains the
exact vertical-slash pattern.

A call with padded keys (a left-padded batch of unequal rows) is selected row by row on each
row's own keys (:func:`~sah_core.block_mask.row_by_row`), so batched equals one by one.
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
    check_int,
    check_size,
    resolve_size,
)

#: Keys (vertical) and diagonals (slash) the official estimate always keeps.
FORCED_VERTICALS = 30
FORCED_SLASHES = 100
#: Lower clamps of the budgets in the official code.
MIN_VERTICALS = 30
MIN_SLASHES = 50


@dataclasses.dataclass
class VerticalSlashMaskerConfig(MaskerConfig):
    """``vertical_size`` columns and ``slash_size`` diagonals per head (int count or float
    fraction of the key length), estimated from the last ``last_q`` queries; the layout's tile
    edge is ``block_size``. Defaults: the official "vertical_and_slash" setting (1000 / 6096)."""

    type_tag = "vertical_slash"

    vertical_size: int | float = 1000
    slash_size: int | float = 6096
    last_q: int = 64
    block_size: int = 64

    def validate(self) -> None:
        super().validate()
        # sizes below the official minimums (30 columns, 50 diagonals) are raised to them
        check_size(self, "vertical_size", self.vertical_size)
        check_size(self, "slash_size", self.slash_size)
        check_int(self, "last_q", self.last_q, 1, 4096)
        check_int(self, "block_size", self.block_size, 1, 4096)


def vertical_slash_scores(call: CallPlan, last_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vertical [B, Hq, K], slash [B, Hq, K])``: summed probabilities of the last ``last_q``
    queries per key and per diagonal offset ``s`` (key = position - s), forced entries not
    yet applied."""
    b, hq, q, k = call.shape
    rows = min(last_q, q)
    queries = call.queries[:, :, q - rows :]
    logits = grouped_scores(queries, call.keys, call.scaling).float()  # [B, Hq, rows, K]
    positions = call.query_positions[q - rows :]
    future = torch.arange(k, device=call.device) > positions.unsqueeze(-1)
    logits = logits.masked_fill(future, float("-inf"))
    if call.attention_mask is not None:
        logits = logits + call.attention_mask[:, :, q - rows :].float()
    probs = torch.softmax(logits, dim=-1).nan_to_num_(0.0)
    vertical = probs.sum(-2)
    # diagonal offset of entry (row, key) = position(row) - key; future entries are 0
    offsets = (positions.unsqueeze(-1) - torch.arange(k, device=call.device)).clamp(min=0)
    slash = torch.zeros((b, hq, k), device=call.device, dtype=probs.dtype)
    slash.scatter_add_(-1, offsets.reshape(1, 1, -1).expand(b, hq, -1), probs.reshape(b, hq, -1))
    return vertical, slash


class VerticalSlashMasker(ResearchMasker):
    """Per-head vertical + slash selection as a block layout (see the module doc)."""

    config_type = VerticalSlashMaskerConfig
    config: VerticalSlashMaskerConfig

    def budgets(self, key_len: int) -> tuple[int, int]:
        """``(verticals, slashes)`` kept per head for ``key_len`` keys."""
        verticals = resolve_size(self.config.vertical_size, key_len)
        slashes = resolve_size(self.config.slash_size, key_len)
        return (
            min(key_len, max(verticals, MIN_VERTICALS)),
            min(key_len, max(slashes, MIN_SLASHES)),
        )

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        _b, _hq, q, k = call.shape
        if previous.representation == "full" or q == 0 or k == 0:
            return previous
        require_last_positions(call, type(self).__name__)
        if call.key_valid is not None:
            # padding shifts diagonal offsets and budgets: each row is selected alone
            return row_by_row(call, previous, self.add_mask, type(self).__name__)
        verticals, slashes = self.budgets(k)
        if verticals >= k or slashes >= k:
            # every column (or every diagonal) kept: every causal pair is attended
            return Mask.full(call.shape, previous.device, previous.dtype)
        vertical, slash = vertical_slash_scores(call, self.config.last_q)
        vertical[..., : min(FORCED_VERTICALS, k)] = float("inf")
        slash[..., : min(FORCED_SLASHES, k)] = float("inf")
        top_columns = vertical.topk(verticals, dim=-1).indices  # [B, Hq, V]
        top_offsets = slash.topk(slashes, dim=-1).indices  # [B, Hq, S]
        mine = vertical_slash_layout(
            call, top_columns, top_offsets, self.config.block_size, previous.dtype
        )
        return merge_into(previous, mine)


def vertical_slash_layout(
    call: CallPlan,
    columns: torch.Tensor,
    offsets: torch.Tensor,
    block_size: int,
    dtype: torch.dtype = torch.float32,
) -> BlockSparseMask:
    """The block layout of vertical ``columns`` ``[B, Hq, V]`` and slash ``offsets``
    ``[B, Hq, S]``: columns kept exactly per query block (those at or before the block's last
    position), each offset's keys ``position - s`` covered by the tiles they fall in."""
    b, hq, q, k = call.shape
    bs = block_size
    nqb, nkb = num_blocks(q, bs), num_blocks(k, bs)
    device = call.device
    blocks = torch.arange(nqb, device=device)
    first_row = blocks * bs
    last_row = torch.clamp(first_row + bs - 1, max=q - 1)
    first_pos = (k - q) + first_row  # [nQb]
    last_pos = (k - q) + last_row
    # slashes: keys from first_pos - s to last_pos - s (clipped at 0) -> their first/last tile
    lo = (first_pos.view(1, 1, -1, 1) - offsets.unsqueeze(2)).clamp(min=0)  # [B, Hq, nQb, S]
    hi = last_pos.view(1, 1, -1, 1) - offsets.unsqueeze(2)
    alive = hi >= 0
    tiles = torch.zeros((b, hq, nqb, nkb + 1), dtype=torch.bool, device=device)
    for edge in (lo, hi):
        tile = torch.where(alive, edge.clamp(min=0) // bs, nkb)
        tiles.scatter_(-1, tile, True)
    # a slash spans at most one tile boundary (its keys are < bs apart), so first + last
    # tile cover it; tiles between them never exist
    tiles = tiles[..., :nkb]
    cols = torch.zeros((b, hq, k + 1), dtype=torch.bool, device=device)
    cols.scatter_(-1, columns, True)
    cols = cols[..., :k].unsqueeze(2) & (
        torch.arange(k, device=device) <= last_pos.view(1, 1, -1, 1)
    )
    return BlockSparseMask.from_layout(call.shape, tiles, bs, cols, dtype=dtype)
