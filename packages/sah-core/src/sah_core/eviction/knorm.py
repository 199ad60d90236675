"""KNorm: keep the keys with the smallest L2 norm.

Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
EMNLP 2024, arXiv:2406.11430: keys with a low norm draw high attention, so each KV head keeps
the ``budget`` keys of lowest ``||k||_2`` (no query is needed).
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.eviction.base import EvictionConfig, EvictionInputs, ScorerEviction


@dataclasses.dataclass
class KNormConfig(EvictionConfig):
    """``budget`` keys per KV head."""

    type_tag = "knorm"


class KNorm(ScorerEviction):
    """Score = ``-||k||_2``."""

    config_type = KNormConfig
    config: KNormConfig

    def score(self, inputs: EvictionInputs) -> torch.Tensor:
        norms: torch.Tensor = inputs.keys.float().norm(dim=-1)
        return -norms
