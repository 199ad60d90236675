"""Oracle top-p masker: each query keeps the fewest keys, in order of true attention
probability, so that the mask holds at least ``top_p`` of the dense softmax mass.

Nucleus (top-p) selection of Holtzman et al., "The Curious Case of Neural Text Degeneration",
ICLR 2020, arXiv:1904.09751, applied to attention keys as in Lin et al., "Twilight: Adaptive
Attention Sparsity with Hierarchical Top-p Pruning", arXiv:2502.02770.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.attention.common import (
    attended_key_limit,
    grouped_scores,
    masked_keys,
    normalize_attention_mask,
    query_chunk_size,
)
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker, check_float
from sah_core.maskers.topk_base import exclude_previous


@dataclasses.dataclass
class OracleTopPMaskerConfig(MaskerConfig):
    """``top_p`` in (0, 1]: target share of the dense softmax mass per row."""

    top_p: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_float(self, "top_p", self.top_p, 0.0, 1.0, low_inclusive=False)


class OracleTopPMasker(ResearchMasker):
    """Adds keys not yet selected, most probable first, until previous mask + new keys hold
    ``top_p`` of the row's dense attention mass (keys the previous mask holds count toward
    the target, so nothing is added when they already reach it)."""

    config_type = OracleTopPMaskerConfig
    config: OracleTopPMaskerConfig

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
        if previous_mask.representation == "full" or q == 0 or k == 0:
            return previous_mask
        additive = normalize_attention_mask(attention_mask, k)
        chunk = query_chunk_size(kwargs, b * h * k)
        parts: list[torch.Tensor] = []
        for start in range(0, q, chunk):
            end = min(q, start + chunk)
            mask_chunk = None if additive is None else additive[:, :, start:end]
            limit = attended_key_limit(mask_chunk, k)
            if limit == 0:
                parts.append(
                    torch.full((b, h, end - start, 0), -1, device=queries.device, dtype=torch.int64)
                )
                continue
            logits = grouped_scores(queries[:, :, start:end], keys[:, :, :limit], scaling).float()
            if mask_chunk is not None:
                logits.masked_fill_(masked_keys(mask_chunk[..., :limit]), float("-inf"))
            probs = torch.softmax(logits, dim=-1).nan_to_num_(0.0)
            candidate = torch.zeros_like(probs)
            exclude_previous(candidate, previous_mask.query_slice(start, end))
            already = torch.isneginf(candidate)
            prev_mass = (probs * already).sum(-1, keepdim=True)
            ranked = probs.masked_fill(already, -1.0)  # previously selected keys sort last
            sorted_p, order = ranked.sort(dim=-1, descending=True)
            mass_before = sorted_p.clamp_min(0.0).cumsum(-1) - sorted_p.clamp_min(0.0)
            take = (prev_mass + mass_before < self.config.top_p) & (sorted_p >= 0.0)
            if mask_chunk is not None:
                allowed = ~masked_keys(mask_chunk[..., :limit]).expand_as(probs)
                take &= allowed.gather(-1, order)
            width = int(take.sum(-1).max())
            parts.append(torch.where(take[..., :width], order[..., :width], -1))
        width = max(p.shape[-1] for p in parts)
        pad = torch.nn.functional.pad
        indices = torch.cat([pad(p, (0, width - p.shape[-1]), value=-1) for p in parts], dim=2)
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous_mask.dtype
        )
        return previous_mask.merge_disjoint(mine)
