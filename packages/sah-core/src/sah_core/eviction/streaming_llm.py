"""StreamingLLM as an eviction: keep the attention sinks and the most recent keys.

Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024,
arXiv:2309.17453. Each layer keeps the first ``sink_size`` keys and the last
``budget - sink_size``; everything between leaves the cache. Survivors keep their original
RoPE positions (as kvpress's ``StreamingLLMPress``; the paper re-numbers positions inside the
cache, which this simulator does not).
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.eviction.base import EvictionConfig, EvictionInputs, ScorerEviction
from sah_core.maskers.base import check_int


@dataclasses.dataclass
class StreamingLLMConfig(EvictionConfig):
    """``budget`` keys per layer: ``sink_size`` first keys + the most recent rest."""

    type_tag = "streaming_llm"

    sink_size: int = 4

    def validate(self) -> None:
        super().validate()
        check_int(self, "sink_size", self.sink_size, low=0, high=2**31 - 1)


class StreamingLLM(ScorerEviction):
    """Score 2 for sinks, 1 + position/K for the rest: the top ``budget`` are the sinks and
    the most recent keys."""

    config_type = StreamingLLMConfig
    config: StreamingLLMConfig

    def score(self, inputs: EvictionInputs) -> torch.Tensor:
        b, hkv, k = (int(x) for x in inputs.keys.shape[:3])
        positions = torch.arange(k, device=inputs.keys.device)
        scores = 1.0 + positions.float() / max(k, 1)
        scores = scores.masked_fill(positions < self.config.sink_size, 2.0)
        return scores.expand(b, hkv, k)
