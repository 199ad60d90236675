"""Mask algebra, research maskers, ResearchAttention, kernels and micro metrics."""

from __future__ import annotations

from sah_core import maskers as _maskers
from sah_core.mask import Mask
from sah_core.maskers import *  # noqa: F403  (every masker config/masker class is public)

__all__: list[str] = ["Mask", *_maskers.__all__]
