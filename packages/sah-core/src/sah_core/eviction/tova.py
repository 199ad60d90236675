"""TOVA: evict the keys the current query attends least (decode-time).

Oren et al., "Transformers are Multi-State RNNs", EMNLP 2024, arXiv:2401.06104 (Token
Omission Via Attention). At the end of the context prefill, and then every ``decode_every``
decode steps once the layer holds more than ``budget`` keys, each layer scores its keys by the
attention of the current (last) query, averaged over all query heads of the layer, and keeps
the ``budget`` best; every head of a layer keeps the same keys. The current token is always
kept (kvpress does the same; its weight is nearly always high anyway).
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.eviction.base import (
    EvictionConfig,
    EvictionInputs,
    ScorerEviction,
    protect_recent,
    window_attention,
)
from sah_core.maskers.base import check_int


@dataclasses.dataclass
class TOVAConfig(EvictionConfig):
    """``budget`` keys per layer (fixed from the context length on); ``decode_every``:
    evict every N decode steps (0 = only after the context prefill)."""

    type_tag = "tova"

    decode_every: int = 1

    def validate(self) -> None:
        super().validate()
        check_int(self, "decode_every", self.decode_every, low=0, high=2**31 - 1)


class TOVA(ScorerEviction):
    """Score = the last query's attention, mean over the layer's query heads."""

    config_type = TOVAConfig
    config: TOVAConfig

    def score(self, inputs: EvictionInputs) -> torch.Tensor:
        probs = window_attention(inputs.queries, inputs.keys, inputs.scaling, 1)  # [B,Hq,1,K]
        layer_score = probs[:, :, 0].mean(dim=1, keepdim=True)  # [B, 1, K]
        b, hkv, k = (int(x) for x in inputs.keys.shape[:3])
        return protect_recent(layer_score.expand(b, hkv, k), 1)
