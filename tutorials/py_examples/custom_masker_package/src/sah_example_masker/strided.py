"""Strided masker: query at position ``p`` attends keys ``p, p - stride, p - 2 * stride, ...``.

The "strided" pattern of Child, Gray, Radford and Sutskever, "Generating Long Sequences with
Sparse Transformers", 2019, arXiv:1904.10509. Written as a downstream plug-in: a config
dataclass plus a masker class, registered through the ``sah.maskers`` entry point (see this
package's pyproject.toml) or at run time with ``register_masker``.
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.maskers import FixedMasker, MaskerConfig, check_int


@dataclasses.dataclass
class StridedMaskerConfig(MaskerConfig):
    """``stride`` >= 1: distance between two attended keys (1 = every key)."""

    stride: int = 8

    def validate(self) -> None:
        super().validate()
        check_int(self, "stride", self.stride, 1)


class StridedMasker(FixedMasker):
    """Positional pattern: the same indices for every batch row and head, so subclass
    ``FixedMasker`` and return them from ``fixed_indices``; the base builds the index-form
    mask and merges it with the previous one."""

    config_type = StridedMaskerConfig
    config: StridedMaskerConfig

    def fixed_indices(self, key_len: int, positions: torch.Tensor) -> torch.Tensor | None:
        stride = self.config.stride
        if stride == 1:
            return None  # every key: a full mask
        steps = torch.arange(0, key_len, stride, device=positions.device)  # [L]
        rows = positions.unsqueeze(-1) - steps  # [Q, L]: p, p - s, p - 2s, ...
        return rows.masked_fill((rows < 0) | (rows >= key_len), -1)
