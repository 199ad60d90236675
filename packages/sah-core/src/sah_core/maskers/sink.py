"""Attention-sink masker: every query attends the first ``sink_size`` keys.

Xiao et al., "Efficient Streaming Language Models with Attention Sinks" (StreamingLLM),
ICLR 2024, arXiv:2309.17453.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from sah_core import search_space as sp
from sah_core.call_plan import CallPlan
from sah_core.maskers.base import (
    FixedMasker,
    MaskerConfig,
    check_selection_size,
    resolve_size,
)


@dataclasses.dataclass
class SinkMaskerConfig(MaskerConfig):
    """``sink_size``: int count or float fraction of the key length."""

    type_tag = "sink"

    sink_size: int | float = 0
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {"sink_size": sp.IntRange(4, 128, log=True)}
    )

    def validate(self) -> None:
        super().validate()
        check_selection_size(self, "sink_size", self.sink_size)


class SinkMasker(FixedMasker):
    """Selects keys ``0 .. sink_size-1`` for every query (full mask when it covers K)."""

    config_type = SinkMaskerConfig
    config: SinkMaskerConfig

    def fixed_span(self, key_len: int, call: CallPlan) -> tuple[int, int] | None:
        return 0, resolve_size(self.config.sink_size, key_len)

    def fixed_indices(self, key_len: int, positions: torch.Tensor) -> torch.Tensor | None:
        size = resolve_size(self.config.sink_size, key_len)
        if size >= key_len:
            return None
        return torch.arange(size, device=positions.device).expand(positions.shape[0], size)
