"""Local (sliding-window) masker: each query attends the ``window_size`` keys ending at its
own position.

Beltagy et al., "Longformer: The Long-Document Transformer", arXiv:2004.05150 (sliding
window attention); used with sinks in StreamingLLM (Xiao et al., arXiv:2309.17453).
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
class LocalMaskerConfig(MaskerConfig):
    """``window_size``: int count or float fraction of the key length."""

    type_tag = "local"

    window_size: int | float = 0
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {"window_size": sp.IntRange(16, 512, log=True)}
    )

    def validate(self) -> None:
        super().validate()
        check_selection_size(self, "window_size", self.window_size)


class LocalMasker(FixedMasker):
    """Query at position ``p`` selects keys ``p-window_size+1 .. p`` (clipped to ``[0, K)``)."""

    config_type = LocalMaskerConfig
    config: LocalMaskerConfig

    def fixed_span(self, key_len: int, call: CallPlan) -> tuple[int, int] | None:
        if not call.is_decode_like:
            return None  # rows at different positions see different windows
        window = resolve_size(self.config.window_size, key_len)
        return key_len - window, key_len  # a window >= K covers every key

    def fixed_indices(self, key_len: int, positions: torch.Tensor) -> torch.Tensor | None:
        window = resolve_size(self.config.window_size, key_len)
        if window >= key_len:
            return None
        offsets = torch.arange(-window + 1, 1, device=positions.device)
        rows = positions.unsqueeze(-1) + offsets
        return rows.masked_fill((rows < 0) | (rows >= key_len), -1)
