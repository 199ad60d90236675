"""Causal masker: each query attends every key at or before its own position.

The autoregressive mask of Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
arXiv:1706.03762.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker


@dataclasses.dataclass
class CausalMaskerConfig(MaskerConfig):
    """No fields."""


class CausalMasker(ResearchMasker):
    """Adds the lower-triangular (query position >= key index) pattern.

    Decode (all queries at the last position) gives a full mask; otherwise the pattern is a
    dense mask stored as a broadcast ``[1, 1, Q, K]`` view (no per-head copy).
    """

    config_type = CausalMaskerConfig
    config: CausalMaskerConfig

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
        positions = self.query_positions(queries, keys, kwargs)
        if previous_mask.representation == "full" or bool((positions >= k - 1).all()):
            return Mask.full(shape, previous_mask.device, previous_mask.dtype)
        allowed = torch.arange(k, device=positions.device) <= positions.unsqueeze(-1)
        pattern = allowed.to(previous_mask.dtype).expand(b, h, q, k)
        return previous_mask.merge(Mask.from_dense(pattern, validate=False))
