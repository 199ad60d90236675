"""TidalDecode: position-persistent sparse attention.

Yang et al., "TidalDecode: Fast and Accurate LLM Decoding with Position Persistent Sparse
Attention", ICLR 2025, arXiv:2410.05076.

A few *token selection layers* run full attention and pick, per query head and query row,
the ``heavy_size`` keys with the highest attention scores (the query's own token always
among them, as the official code appends the current token to the top ``k - 1``); every later
layer attends only the keys picked by the most recent selection layer of the same step.
Layers before the first selection layer (``sparse_layer_start``, 2 in the paper and code) run
full attention. ``reselection_layers`` re-select in the middle of the stack (the official
code's ``correction_layer``; 9 by default there, 13 for Llama-3-8B in the paper).

``shared_heads`` (off by default): instead of one pick per query head, one token set per query
row for every head -- the heads' picks merged rank by rank (every head's best key, then every
head's second, ...), duplicates dropped, cut at ``heavy_size``. The official code
(DerrickYLJ/TidalDecode) reuses head ``h``'s pick in head ``h`` of the following layers, which is
the default here; on SmolLM2-135M (9 query heads, 30 layers) that per-head persistence loses
the needle even at 512 of 2K keys; the shared set finds 1 of 2 at 256 (README, method space).

Cross-layer state: the selection layer stores its pick in its own state slot
(``sparse_meta_data[layer][slot]``), tagged with the call's ``(Q, K)``; the following layers
read the slot of the most recent selection layer. The pick is per batch row (padding keys are
never picked), so a batched request equals its rows one by one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.attention.common import grouped_scores
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import check_int, resolve_size
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig


@dataclasses.dataclass
class TidalDecodeMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row (int count or float fraction of the key length, own token
    included); full attention below ``sparse_layer_start``; selection at
    ``sparse_layer_start`` and at each of ``reselection_layers`` (ascending, above it);
    ``shared_heads``: one token set per row for all query heads (see the module doc)."""

    type_tag = "tidal_decode"

    heavy_size: int | float = 256
    sparse_layer_start: int = 2
    reselection_layers: tuple[int, ...] = (9,)
    shared_heads: bool = False

    def validate(self) -> None:
        super().validate()
        check_int(self, "sparse_layer_start", self.sparse_layer_start, 0, 100_000)
        layers = self.reselection_layers
        if not isinstance(layers, (tuple, list)) or any(
            isinstance(x, bool) or not isinstance(x, int) for x in layers
        ):
            raise ValueError(
                f"TidalDecodeMaskerConfig.reselection_layers={layers!r} is not allowed: use a "
                "tuple of layer indices"
            )
        if list(layers) != sorted(set(layers)) or any(x <= self.sparse_layer_start for x in layers):
            raise ValueError(
                f"TidalDecodeMaskerConfig.reselection_layers={tuple(layers)!r} is not allowed: "
                f"use distinct ascending layer indices > sparse_layer_start="
                f"{self.sparse_layer_start}"
            )
        object.__setattr__(self, "reselection_layers", tuple(layers))
        if not isinstance(self.shared_heads, bool):
            raise ValueError(
                f"TidalDecodeMaskerConfig.shared_heads={self.shared_heads!r} is not allowed: "
                "use True or False"
            )


class TidalDecodeMasker(TopKMasker):
    """Selection layers: full attention + store the top-k pick; later layers reuse it."""

    config_type = TidalDecodeMaskerConfig
    config: TidalDecodeMaskerConfig

    def selection_layers(self) -> tuple[int, ...]:
        return (self.config.sparse_layer_start, *self.config.reselection_layers)

    def budget(self, key_len: int) -> int:
        # the own token is added to the pick, so the scored part takes one fewer
        return resolve_size(self.config.heavy_size, key_len) - 1

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        return grouped_scores(chunk.queries, call.keys[:, :, : chunk.key_limit], call.scaling)

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        layer = call.layer_idx
        if layer is None:
            raise ValueError(
                "layer_idx=None is not allowed for TidalDecodeMasker: it needs the decoder "
                "layer of each call (selection layers vs reuse layers)"
            )
        if previous.representation == "full":
            return previous
        full = Mask.full(call.shape, previous.device, previous.dtype)
        if layer < self.config.sparse_layer_start:
            return full  # dense layers
        stamp = (call.q_len, call.k_len)
        if layer in self.selection_layers():
            call.state["tidal_pick"] = (stamp, self.select(call, previous.dtype))
            return full  # a selection layer itself attends everything
        source = max(x for x in self.selection_layers() if x < layer)
        slot = call.sparse_meta_data.get(source, {}).get(
            f"{call.masker_position}:{type(self.config).type_tag}", {}
        )
        entry = slot.get("tidal_pick")
        if entry is None or entry[0] != stamp:
            raise ValueError(
                f"layer {layer}: TidalDecodeMasker found no selection from layer {source} for "
                f"this step (Q, K)={stamp}; selection layers {self.selection_layers()} must run "
                "before the layers that reuse them, in the same forward pass"
            )
        pick: Mask = entry[1]
        return previous.merge(pick)

    def select(self, call: CallPlan, dtype: torch.dtype) -> Mask:
        """Own token + the top ``heavy_size - 1`` other keys per row (index form)."""
        b, h, q, k = call.shape
        if resolve_size(self.config.heavy_size, k) >= k:
            return Mask.full(call.shape, call.device, dtype)
        own = call.query_positions.view(1, 1, q, 1).expand(b, h, q, 1)
        if call.query_valid is not None:
            own = own.masked_fill(~call.query_valid.view(b, 1, q, 1), -1)
        own_mask = Mask.from_index(
            own.contiguous(), None, call.shape, assume_unique=True, validate=False, dtype=dtype
        )
        if self.config.shared_heads:
            return own_mask.merge_disjoint(self.shared_pick(call, dtype))
        return TopKMasker.add_mask(self, call, own_mask)

    def shared_pick(self, call: CallPlan, dtype: torch.dtype) -> Mask:
        """``heavy_size - 1`` keys per row, the same for every head: the heads' top keys
        (own token and forbidden keys excluded) merged rank by rank, first occurrence kept."""
        b, h, q, k = call.shape
        take = self.budget(k)
        counts = call.key_counts
        if counts is not None and isinstance(self.config.heavy_size, float):
            # a fraction resolves on each row's own key count (batched == one by one)
            row_take = torch.tensor(
                [self.budget(int(c)) for c in counts.tolist()], device=call.device
            ).view(b, 1, 1)
        else:
            row_take = torch.full((b, 1, 1), take, device=call.device)
        picks = torch.full((b, 1, q, max(take, 0)), -1, dtype=torch.int64, device=call.device)
        bound = torch.finfo(torch.float32).min / 2
        for chunk in call.query_chunks():
            limit = chunk.key_limit
            width = min(take, limit)
            if width <= 0:
                continue
            scores = self.key_scores(call, chunk, None)[..., :limit].float()
            if chunk.attention_mask is not None:
                scores = scores + chunk.attention_mask[..., :limit].float()
            own = call.query_positions[chunk.start : chunk.end]
            inside = own < limit
            rows = torch.arange(chunk.rows, device=call.device)[inside]
            scores[:, :, rows, own[inside]] = float("-inf")  # the own token is added apart
            values, ranked = scores.topk(width, dim=-1)  # [B, Hq, Qc, W], best first
            ranked = ranked.masked_fill(values <= bound, -1)
            merged = ranked.permute(0, 2, 3, 1).reshape(b, chunk.rows, width * h)  # rank-major
            slot = torch.arange(width * h, device=call.device).expand_as(merged)
            column = torch.where(merged >= 0, merged, limit)
            first = torch.full((b, chunk.rows, limit + 1), width * h, device=call.device)
            first = first.scatter_reduce(-1, column, slot, reduce="amin")
            keep = (merged >= 0) & (first.gather(-1, column) == slot)
            keep &= keep.cumsum(-1) <= row_take
            order = torch.where(keep, slot, width * h).sort(-1).values[..., :width]
            chosen = merged.gather(-1, order.clamp(max=width * h - 1))
            picks[:, 0, chunk.start : chunk.end, :width] = chosen.masked_fill(
                order >= width * h, -1
            )
        return Mask.from_index(
            picks.expand(b, h, q, picks.shape[-1]).contiguous(),
            None,
            call.shape,
            assume_unique=True,
            validate=False,
            dtype=dtype,
        )
