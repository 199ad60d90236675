"""Oracle top-p masker: each query keeps the fewest keys, in order of true attention
probability, so that the mask holds at least ``top_p`` of the dense softmax mass.

Nucleus (top-p) selection of Holtzman et al., "The Curious Case of Neural Text Degeneration",
ICLR 2020, arXiv:1904.09751, applied to attention keys as in Lin et al., "Twilight: Adaptive
Attention Sparsity with Hierarchical Top-p Pruning", arXiv:2502.02770.

``top_p_of`` says what ``top_p`` is a share of. ``"all"`` (default): the row's whole dense
softmax mass, so the final mask (previous keys included) holds at least ``top_p`` of it --
the nucleus guarantee, whatever ran before. ``"remaining"``: the mass the previous maskers
left, so this masker adds keys until they hold ``top_p`` of that remainder (the original
sparse-attention-hub's rule; a stack then holds ``prev + top_p * (1 - prev)``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import grouped_scores, masked_keys
from sah_core.call_plan import CallPlan
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker, check_choice, check_float
from sah_core.maskers.topk_base import exclude_previous

_MASS_OF = ("all", "remaining")


@dataclasses.dataclass
class OracleTopPMaskerConfig(MaskerConfig):
    """``top_p`` in (0, 1]: target share of the dense softmax mass per row; ``top_p_of``
    ``"all"`` (share of the whole mass, previous keys count) or ``"remaining"`` (share of
    the mass the previous mask does not hold)."""

    type_tag = "oracle_top_p"

    top_p: float = 1.0
    top_p_of: str = "all"
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {"top_p": sp.FloatRange(0.5, 0.99)}, (sp.budget_left,)
    )

    def validate(self) -> None:
        super().validate()
        check_float(self, "top_p", self.top_p, 0.0, 1.0, low_inclusive=False)
        check_choice(self, "top_p_of", self.top_p_of, _MASS_OF)


class OracleTopPMasker(ResearchMasker):
    """Adds keys not yet selected, most probable first, until previous mask + new keys hold
    ``top_p`` of the row's dense attention mass (``top_p_of="all"``: keys the previous mask
    holds count toward the target, so nothing is added when they already reach it), or until
    the new keys hold ``top_p`` of the mass the previous mask leaves (``"remaining"``)."""

    config_type = OracleTopPMaskerConfig
    config: OracleTopPMaskerConfig

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        shape = call.shape
        b, h, q, k = shape
        if previous.representation == "full" or q == 0 or k == 0:
            return previous
        parts: list[torch.Tensor] = []
        for chunk in call.query_chunks():
            mask_chunk, limit = chunk.attention_mask, chunk.key_limit
            if limit == 0:
                parts.append(
                    torch.full((b, h, chunk.rows, 0), -1, device=call.device, dtype=torch.int64)
                )
                continue
            logits = grouped_scores(chunk.queries, call.keys[:, :, :limit], call.scaling).float()
            if mask_chunk is not None:
                logits.masked_fill_(masked_keys(mask_chunk[..., :limit]), float("-inf"))
            probs = torch.softmax(logits, dim=-1).nan_to_num_(0.0)
            candidate = torch.zeros_like(probs)
            exclude_previous(candidate, previous.query_slice(chunk.start, chunk.end))
            already = torch.isneginf(candidate)
            prev_mass = (probs * already).sum(-1, keepdim=True)
            ranked = probs.masked_fill(already, -1.0)  # previously selected keys sort last
            sorted_p, order = ranked.sort(dim=-1, descending=True, stable=True)
            mass_before = sorted_p.clamp_min(0.0).cumsum(-1) - sorted_p.clamp_min(0.0)
            if self.config.top_p_of == "all":
                take = prev_mass + mass_before < self.config.top_p
            else:
                take = mass_before < self.config.top_p * (1.0 - prev_mass)
            take &= sorted_p >= 0.0
            if mask_chunk is not None:
                allowed = ~masked_keys(mask_chunk[..., :limit]).expand_as(probs)
                take &= allowed.gather(-1, order)
            width = int(take.sum(-1).max())
            parts.append(torch.where(take[..., :width], order[..., :width], -1))
        width = max(p.shape[-1] for p in parts)
        pad = torch.nn.functional.pad
        indices = torch.cat([pad(p, (0, width - p.shape[-1]), value=-1) for p in parts], dim=2)
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous.dtype
        )
        return previous.merge_disjoint(mine)
