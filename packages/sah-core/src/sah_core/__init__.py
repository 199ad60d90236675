"""Mask algebra, research maskers, ResearchAttention, kernels and micro metrics.

Public names (``__all__``): :class:`Mask`, :class:`ResearchAttention`,
:class:`ResearchAttentionConfig`, :class:`MicroMetricLogger`, :func:`index_attention` and every
masker config / masker class of :mod:`sah_core.maskers` (including plug-in maskers shipped in
this package).
"""

from __future__ import annotations

from sah_core import maskers as _maskers
from sah_core.attention import index_attention, masked_attention
from sah_core.attention.backends import (
    attention_backends,
    register_attention_backend,
    run_attention,
    unregister_attention_backend,
)
from sah_core.call_plan import CallPlan, NonFiniteInputError, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers import *  # noqa: F403  (every masker config/masker class is public)
from sah_core.metrics import MicroMetricLogger
from sah_core.research_attention import ResearchAttention, ResearchAttentionConfig

__all__: list[str] = [
    "CallPlan",
    "Mask",
    "NonFiniteInputError",
    "QueryChunk",
    "attention_backends",
    "register_attention_backend",
    "run_attention",
    "unregister_attention_backend",
    "MicroMetricLogger",
    "ResearchAttention",
    "ResearchAttentionConfig",
    "index_attention",
    "masked_attention",
    *_maskers.__all__,
]
