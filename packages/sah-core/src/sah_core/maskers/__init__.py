"""Research maskers: one file per method (config dataclass + masker), found through the
``sah.maskers`` entry-point group. See :mod:`sah_core.maskers.base` for how to add one."""

from __future__ import annotations

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
    check_selection_size,
    check_size,
    resolve_size,
)
from sah_core.maskers.block_sparse_topk import BlockSparseTopKMasker, BlockSparseTopKMaskerConfig
from sah_core.maskers.causal import CausalMasker, CausalMaskerConfig
from sah_core.maskers.double_sparsity import (
    DoubleSparsityTopKMasker,
    DoubleSparsityTopKMaskerConfig,
)
from sah_core.maskers.hash_attention import HashAttentionTopKMasker, HashAttentionTopKMaskerConfig
from sah_core.maskers.local import LocalMasker, LocalMaskerConfig
from sah_core.maskers.magic_pig import MagicPig, MagicPigConfig
from sah_core.maskers.oracle_top_k import OracleTopK, OracleTopKConfig
from sah_core.maskers.oracle_top_p import OracleTopPMasker, OracleTopPMaskerConfig
from sah_core.maskers.pq_cache import PQCache, PQCacheConfig
from sah_core.maskers.quest import QuestTopKMasker, QuestTopKMaskerConfig
from sah_core.maskers.random_sampling import RandomSamplingMasker, RandomSamplingMaskerConfig
from sah_core.maskers.registry import (
    available_maskers,
    config_class_for,
    masker_class_for,
    register_masker,
)
from sah_core.maskers.sampling_base import SamplingMasker, SamplingMaskerConfig
from sah_core.maskers.sink import SinkMasker, SinkMaskerConfig
from sah_core.maskers.socket_topk import SocketMasker, SocketMaskerConfig
from sah_core.maskers.tidal_decode import TidalDecodeMasker, TidalDecodeMaskerConfig
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig, expand_page_scores
from sah_core.maskers.vertical_slash import VerticalSlashMasker, VerticalSlashMaskerConfig

__all__ = [
    "AdaptiveSamplingMasker",
    "AdaptiveSamplingMaskerConfig",
    "BlockSparseTopKMasker",
    "BlockSparseTopKMaskerConfig",
    "CausalMasker",
    "CausalMaskerConfig",
    "DoubleSparsityTopKMasker",
    "DoubleSparsityTopKMaskerConfig",
    "FixedMasker",
    "HashAttentionTopKMasker",
    "HashAttentionTopKMaskerConfig",
    "LocalMasker",
    "LocalMaskerConfig",
    "MagicPig",
    "MagicPigConfig",
    "MaskerConfig",
    "OracleTopK",
    "OracleTopKConfig",
    "OracleTopPMasker",
    "OracleTopPMaskerConfig",
    "PQCache",
    "PQCacheConfig",
    "QuestTopKMasker",
    "QuestTopKMaskerConfig",
    "RandomSamplingMasker",
    "RandomSamplingMaskerConfig",
    "ResearchMasker",
    "SamplingMasker",
    "SamplingMaskerConfig",
    "SinkMasker",
    "SinkMaskerConfig",
    "SocketMasker",
    "SocketMaskerConfig",
    "TidalDecodeMasker",
    "TidalDecodeMaskerConfig",
    "TopKMasker",
    "TopKMaskerConfig",
    "VerticalSlashMasker",
    "VerticalSlashMaskerConfig",
    "available_maskers",
    "check_choice",
    "check_float",
    "check_int",
    "check_selection_size",
    "check_size",
    "config_class_for",
    "expand_page_scores",
    "masker_class_for",
    "register_masker",
    "resolve_size",
]
