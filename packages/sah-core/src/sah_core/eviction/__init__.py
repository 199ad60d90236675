"""KV-eviction maskers: keys removed from the cache for every later query.

One file per method (config dataclass + masker), registered by its JSON tag like the
selection maskers; see :mod:`sah_core.eviction.base`. ``ModelAdapterHF`` runs them: it
scores at the end of the context prefill (and every ``decode_every`` decode steps for TOVA and
H2O) and slices the cache (uniform budgets) or stores a padded per-head layout (AdaKV).
"""

from __future__ import annotations

from sah_core.eviction.adakv import AdaKV, AdaKVConfig
from sah_core.eviction.base import (
    EvictionConfig,
    EvictionInputs,
    EvictionMasker,
    KeepPlan,
    ScorerEviction,
    window_attention,
)
from sah_core.eviction.h2o import H2O, H2OConfig
from sah_core.eviction.knorm import KNorm, KNormConfig
from sah_core.eviction.pyramidkv import PyramidKV, PyramidKVConfig, pyramid_budget
from sah_core.eviction.snapkv import SnapKV, SnapKVConfig
from sah_core.eviction.streaming_llm import StreamingLLM, StreamingLLMConfig
from sah_core.eviction.tova import TOVA, TOVAConfig
from sah_core.maskers.base import MaskerConfig

__all__ = [
    "H2O",
    "TOVA",
    "AdaKV",
    "AdaKVConfig",
    "EvictionConfig",
    "EvictionInputs",
    "EvictionMasker",
    "H2OConfig",
    "KNorm",
    "KNormConfig",
    "KeepPlan",
    "PyramidKV",
    "PyramidKVConfig",
    "ScorerEviction",
    "SnapKV",
    "SnapKVConfig",
    "StreamingLLM",
    "StreamingLLMConfig",
    "TOVAConfig",
    "pyramid_budget",
    "window_attention",
]


def eviction_configs(
    configs: list[MaskerConfig],
) -> tuple[list[EvictionConfig], list[MaskerConfig]]:
    """Split a masker list into (evictions, selection maskers), order kept."""
    evictions = [c for c in configs if isinstance(c, EvictionConfig)]
    others = [c for c in configs if not isinstance(c, EvictionConfig)]
    return evictions, others
