"""Research maskers: one file per method (config dataclass + masker), found through the
``sah.maskers`` entry-point group. See :mod:`sah_core.maskers.base` for how to add one."""

from __future__ import annotations

import importlib

from sah_core.maskers.adaptive_sampling import (
    AdaptiveSamplingMasker,
    AdaptiveSamplingMaskerConfig,
)
from sah_core.maskers.base import (
    FixedMasker,
    MaskerConfig,
    ResearchMasker,
    check_choice,
    check_float,
    check_int,
    check_size,
    resolve_size,
)
from sah_core.maskers.causal import CausalMasker, CausalMaskerConfig
from sah_core.maskers.local import LocalMasker, LocalMaskerConfig
from sah_core.maskers.oracle_top_k import OracleTopK, OracleTopKConfig
from sah_core.maskers.oracle_top_p import OracleTopPMasker, OracleTopPMaskerConfig
from sah_core.maskers.random_sampling import RandomSamplingMasker, RandomSamplingMaskerConfig
from sah_core.maskers.registry import (
    available_maskers,
    config_class_for,
    masker_class_for,
    register_masker,
)
from sah_core.maskers.sampling_base import SamplingMasker, SamplingMaskerConfig
from sah_core.maskers.sink import SinkMasker, SinkMaskerConfig
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig, expand_page_scores

__all__ = [
    "AdaptiveSamplingMasker",
    "AdaptiveSamplingMaskerConfig",
    "CausalMasker",
    "CausalMaskerConfig",
    "FixedMasker",
    "LocalMasker",
    "LocalMaskerConfig",
    "MaskerConfig",
    "OracleTopK",
    "OracleTopKConfig",
    "OracleTopPMasker",
    "OracleTopPMaskerConfig",
    "RandomSamplingMasker",
    "RandomSamplingMaskerConfig",
    "ResearchMasker",
    "SamplingMasker",
    "SamplingMaskerConfig",
    "SinkMasker",
    "SinkMaskerConfig",
    "TopKMasker",
    "TopKMaskerConfig",
    "available_maskers",
    "check_choice",
    "check_float",
    "check_int",
    "check_size",
    "config_class_for",
    "expand_page_scores",
    "masker_class_for",
    "register_masker",
    "resolve_size",
]

#: Maskers written in separate modules that may not exist yet in a checkout
#: (module name -> public names it must define).
_OPTIONAL_MODULES: dict[str, tuple[str, ...]] = {
    "hash_attention": ("HashAttentionTopKMaskerConfig", "HashAttentionTopKMasker"),
    "double_sparsity": ("DoubleSparsityTopKMaskerConfig", "DoubleSparsityTopKMasker"),
    "quest": ("QuestTopKMaskerConfig", "QuestTopKMasker"),
    "socket_topk": ("SocketMaskerConfig", "SocketMasker"),
    "pq_cache": ("PQCacheConfig", "PQCache"),
    "magic_pig": ("MagicPigConfig", "MagicPig"),
}


def _import_optional() -> None:
    for module_name, names in _OPTIONAL_MODULES.items():
        full_name = f"{__name__}.{module_name}"
        try:
            module = importlib.import_module(full_name)
        except ModuleNotFoundError as error:
            if error.name == full_name:
                continue  # not written yet: its names are simply absent
            raise
        for name in names:
            if hasattr(module, name):
                globals()[name] = getattr(module, name)
                __all__.append(name)


_import_optional()
