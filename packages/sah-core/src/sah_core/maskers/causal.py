"""Causal masker: each query attends every key at or before its own position.

The autoregressive mask of Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
arXiv:1706.03762.
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.call_plan import CallPlan
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker


@dataclasses.dataclass
class CausalMaskerConfig(MaskerConfig):
    """No fields."""

    type_tag = "causal"


class CausalMasker(ResearchMasker):
    """Adds the lower-triangular (query position >= key index) pattern.

    Decode (all queries at the last position) gives a full mask; otherwise the pattern is a
    dense mask stored as a broadcast ``[1, 1, Q, K]`` view (no per-head copy).
    """

    config_type = CausalMaskerConfig
    config: CausalMaskerConfig

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        shape = call.shape
        b, h, q, k = shape
        if previous.representation == "full" or call.is_decode_like:
            return Mask.full(shape, previous.device, previous.dtype)
        positions = call.query_positions
        if bool((positions >= k - 1).all()):
            return Mask.full(shape, previous.device, previous.dtype)
        allowed = torch.arange(k, device=positions.device) <= positions.unsqueeze(-1)
        pattern = allowed.to(previous.dtype).expand(b, h, q, k)
        return previous.merge(Mask.from_dense(pattern, validate=False))
