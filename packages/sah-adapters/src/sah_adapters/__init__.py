"""ModelAdapterHF: sparse attention inside HuggingFace decoder LLMs, through the registry."""

from sah_adapters.attention_registration import (
    is_registered,
    register_attention,
    unique_attention_name,
    unregister_attention,
)
from sah_adapters.builtin_models import BUILTIN_MODELS, BuiltinModel, cache_dir, converted_model_dir
from sah_adapters.context_kv import ContextCacheStore, ContextCheckpoint
from sah_adapters.decoding import TokenDecoder
from sah_adapters.generation_settings import GenerationSettings, RequestSettings
from sah_adapters.model_adapter_hf import ModelAdapterHF
from sah_adapters.model_loading import (
    CorruptCheckpointError,
    ModelLoadError,
    ModelPathNotFoundError,
    UnsafeCheckpointError,
    load_model,
    load_tokenizer,
    resolve_model_source,
)
from sah_adapters.placement import Placement
from sah_adapters.reference_attention import reference_attention
from sah_adapters.request_stats import RequestStats

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "ContextCacheStore",
    "ContextCheckpoint",
    "CorruptCheckpointError",
    "GenerationSettings",
    "ModelAdapterHF",
    "ModelLoadError",
    "ModelPathNotFoundError",
    "Placement",
    "RequestSettings",
    "RequestStats",
    "TokenDecoder",
    "UnsafeCheckpointError",
    "cache_dir",
    "converted_model_dir",
    "is_registered",
    "load_model",
    "load_tokenizer",
    "reference_attention",
    "register_attention",
    "resolve_model_source",
    "unique_attention_name",
    "unregister_attention",
]
