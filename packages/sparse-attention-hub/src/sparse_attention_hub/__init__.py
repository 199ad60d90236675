"""Sparse Attention Hub: the one-import public API.

``from sparse_attention_hub import ModelAdapterHF, Request, RequestResponse,
ResearchAttentionConfig, ...``. Every public name is declared statically below (the
``TYPE_CHECKING`` imports), so type checkers and IDEs see the real classes, while at run
time a name's package is imported only when the name is first used: ``import
sparse_attention_hub`` stays cheap and ``from sparse_attention_hub import write_report``
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Names of the old API and what replaces them.
REMOVED_NAMES: dict[str, str] = {
    "SparseAttentionHF": "use ModelAdapterHF (sparse_attention_hub.ModelAdapterHF) instead",
    "SparseAttentionGen": "use ModelAdapterHF.process_request(Request(...)) instead",
    "ModelHub": "use ModelAdapterHF (it loads models itself) instead",
    "ModelHubHF": "use ModelAdapterHF (it loads models itself) instead",
    "Pipeline": "removed; no replacement (use ModelAdapterHF.process_request)",
    "PipelineHF": "removed; no replacement (use ModelAdapterHF.process_request)",
    "SparseAttentionServer": "removed; no replacement",
}

# Packages searched, in order, for a public name missing from _PROVIDED (a name a package
# added later; tests/integration/test_public_api.py asks for it to be declared here).
_PROVIDERS = ("sah_protocol", "sah_core", "sah_adapters", "sah_bench")

#: Every public name and the package that provides it (first provider wins).
_PROVIDED: dict[str, str] = {
    "BENCHMARKS_ENTRY_POINT_GROUP": "sah_protocol",
    "BenchmarkProtocol": "sah_protocol",
    "MASKERS_ENTRY_POINT_GROUP": "sah_protocol",
    "MaskerConfigProtocol": "sah_protocol",
    "MaskerProtocol": "sah_protocol",
    "ModelAdapter": "sah_protocol",
    "ModelHubAdapterInterface": "sah_protocol",
    "Request": "sah_protocol",
    "RequestResponse": "sah_protocol",
    "ResultRecord": "sah_protocol",
    "SamplingMaskerProtocol": "sah_protocol",
    "ScorerProtocol": "sah_protocol",
    "SparseAttentionAdapterInterface": "sah_protocol",
    "AdaptiveSamplingMasker": "sah_core",
    "AdaptiveSamplingMaskerConfig": "sah_core",
    "BlockSparseTopKMasker": "sah_core",
    "BlockSparseTopKMaskerConfig": "sah_core",
    "CallPlan": "sah_core",
    "CausalMasker": "sah_core",
    "CausalMaskerConfig": "sah_core",
    "DoubleSparsityTopKMasker": "sah_core",
    "DoubleSparsityTopKMaskerConfig": "sah_core",
    "FixedMasker": "sah_core",
    "HashAttentionTopKMasker": "sah_core",
    "HashAttentionTopKMaskerConfig": "sah_core",
    "LocalMasker": "sah_core",
    "LocalMaskerConfig": "sah_core",
    "MagicPig": "sah_core",
    "MagicPigConfig": "sah_core",
    "Mask": "sah_core",
    "MaskerConfig": "sah_core",
    "MicroMetricLogger": "sah_core",
    "NonFiniteInputError": "sah_core",
    "OracleTopK": "sah_core",
    "OracleTopKConfig": "sah_core",
    "OracleTopPMasker": "sah_core",
    "OracleTopPMaskerConfig": "sah_core",
    "PQCache": "sah_core",
    "PQCacheConfig": "sah_core",
    "QueryChunk": "sah_core",
    "QuestTopKMasker": "sah_core",
    "QuestTopKMaskerConfig": "sah_core",
    "RandomSamplingMasker": "sah_core",
    "RandomSamplingMaskerConfig": "sah_core",
    "ResearchAttention": "sah_core",
    "ResearchAttentionConfig": "sah_core",
    "ResearchMasker": "sah_core",
    "SamplingMasker": "sah_core",
    "SamplingMaskerConfig": "sah_core",
    "SinkMasker": "sah_core",
    "SinkMaskerConfig": "sah_core",
    "SocketMasker": "sah_core",
    "SocketMaskerConfig": "sah_core",
    "TidalDecodeMasker": "sah_core",
    "TidalDecodeMaskerConfig": "sah_core",
    "TopKMasker": "sah_core",
    "TopKMaskerConfig": "sah_core",
    "VerticalSlashMasker": "sah_core",
    "VerticalSlashMaskerConfig": "sah_core",
    "attention_backends": "sah_core",
    "available_maskers": "sah_core",
    "check_choice": "sah_core",
    "check_float": "sah_core",
    "check_int": "sah_core",
    "check_selection_size": "sah_core",
    "check_size": "sah_core",
    "config_class_for": "sah_core",
    "expand_page_scores": "sah_core",
    "index_attention": "sah_core",
    "masked_attention": "sah_core",
    "masker_class_for": "sah_core",
    "register_attention_backend": "sah_core",
    "register_masker": "sah_core",
    "resolve_size": "sah_core",
    "run_attention": "sah_core",
    "unregister_attention_backend": "sah_core",
    "BUILTIN_MODELS": "sah_adapters",
    "BuiltinModel": "sah_adapters",
    "ContextCacheStore": "sah_adapters",
    "ContextCheckpoint": "sah_adapters",
    "CorruptCheckpointError": "sah_adapters",
    "GenerationSettings": "sah_adapters",
    "ModelAdapterHF": "sah_adapters",
    "ModelLoadError": "sah_adapters",
    "ModelPathNotFoundError": "sah_adapters",
    "Placement": "sah_adapters",
    "RequestSettings": "sah_adapters",
    "RequestStats": "sah_adapters",
    "TokenDecoder": "sah_adapters",
    "UnsafeCheckpointError": "sah_adapters",
    "cache_dir": "sah_adapters",
    "converted_model_dir": "sah_adapters",
    "is_registered": "sah_adapters",
    "load_model": "sah_adapters",
    "load_tokenizer": "sah_adapters",
    "reference_attention": "sah_adapters",
    "register_attention": "sah_adapters",
    "resolve_model_source": "sah_adapters",
    "unique_attention_name": "sah_adapters",
    "unregister_attention": "sah_adapters",
    "Aime2024": "sah_bench",
    "Aime2025": "sah_bench",
    "Benchmark": "sah_bench",
    "BenchmarkExecutor": "sah_bench",
    "BenchmarkSpec": "sah_bench",
    "COMMON_FIELDS": "sah_bench",
    "CellResult": "sah_bench",
    "CellSpec": "sah_bench",
    "DEFAULT_BENCHMARK": "sah_bench",
    "InfiniteBench": "sah_bench",
    "LoftRag": "sah_bench",
    "LongBench": "sah_bench",
    "LongBenchV2": "sah_bench",
    "LooGLE": "sah_bench",
    "MockBenchmark": "sah_bench",
    "RequestGroup": "sah_bench",
    "Ruler": "sah_bench",
    "Ruler16K": "sah_bench",
    "Ruler32K": "sah_bench",
    "SYNTHETIC_TASKS": "sah_bench",
    "SyntheticBenchmark": "sah_bench",
    "ZeroScrolls": "sah_bench",
    "boxed_match_score": "sah_bench",
    "build_hf_adapter": "sah_bench",
    "choice_score": "sah_bench",
    "classification_score": "sah_bench",
    "code_sim_score": "sah_bench",
    "collect_cells": "sah_bench",
    "count_score": "sah_bench",
    "coverage_score": "sah_bench",
    "first_int_score": "sah_bench",
    "generate_row": "sah_bench",
    "get_benchmark": "sah_bench",
    "get_benchmark_class": "sah_bench",
    "group_rows": "sah_bench",
    "kv_retrieval_score": "sah_bench",
    "leaderboard": "sah_bench",
    "list_benchmarks": "sah_bench",
    "math_find_score": "sah_bench",
    "option_choice_score": "sah_bench",
    "parse_benchmark_spec": "sah_bench",
    "qa_f1_score": "sah_bench",
    "qa_f1_zh_score": "sah_bench",
    "retrieval_score": "sah_bench",
    "retrieval_zh_score": "sah_bench",
    "rouge_score": "sah_bench",
    "rouge_zh_score": "sah_bench",
    "string_match_all": "sah_bench",
    "string_match_part": "sah_bench",
    "subspan_em_score": "sah_bench",
    "tokenizer_token_counter": "sah_bench",
    "whitespace_token_count": "sah_bench",
    "write_report": "sah_bench",
}

if TYPE_CHECKING:
    from sah_adapters import (
        BUILTIN_MODELS as BUILTIN_MODELS,
    )
    from sah_adapters import (
        BuiltinModel as BuiltinModel,
    )
    from sah_adapters import (
        ContextCacheStore as ContextCacheStore,
    )
    from sah_adapters import (
        ContextCheckpoint as ContextCheckpoint,
    )
    from sah_adapters import (
        CorruptCheckpointError as CorruptCheckpointError,
    )
    from sah_adapters import (
        GenerationSettings as GenerationSettings,
    )
    from sah_adapters import (
        ModelAdapterHF as ModelAdapterHF,
    )
    from sah_adapters import (
        ModelLoadError as ModelLoadError,
    )
    from sah_adapters import (
        ModelPathNotFoundError as ModelPathNotFoundError,
    )
    from sah_adapters import (
        Placement as Placement,
    )
    from sah_adapters import (
        RequestSettings as RequestSettings,
    )
    from sah_adapters import (
        RequestStats as RequestStats,
    )
    from sah_adapters import (
        TokenDecoder as TokenDecoder,
    )
    from sah_adapters import (
        UnsafeCheckpointError as UnsafeCheckpointError,
    )
    from sah_adapters import (
        cache_dir as cache_dir,
    )
    from sah_adapters import (
        converted_model_dir as converted_model_dir,
    )
    from sah_adapters import (
        is_registered as is_registered,
    )
    from sah_adapters import (
        load_model as load_model,
    )
    from sah_adapters import (
        load_tokenizer as load_tokenizer,
    )
    from sah_adapters import (
        reference_attention as reference_attention,
    )
    from sah_adapters import (
        register_attention as register_attention,
    )
    from sah_adapters import (
        resolve_model_source as resolve_model_source,
    )
    from sah_adapters import (
        unique_attention_name as unique_attention_name,
    )
    from sah_adapters import (
        unregister_attention as unregister_attention,
    )
    from sah_bench import (
        COMMON_FIELDS as COMMON_FIELDS,
    )
    from sah_bench import (
        DEFAULT_BENCHMARK as DEFAULT_BENCHMARK,
    )
    from sah_bench import (
        SYNTHETIC_TASKS as SYNTHETIC_TASKS,
    )
    from sah_bench import (
        Aime2024 as Aime2024,
    )
    from sah_bench import (
        Aime2025 as Aime2025,
    )
    from sah_bench import (
        Benchmark as Benchmark,
    )
    from sah_bench import (
        BenchmarkExecutor as BenchmarkExecutor,
    )
    from sah_bench import (
        BenchmarkSpec as BenchmarkSpec,
    )
    from sah_bench import (
        CellResult as CellResult,
    )
    from sah_bench import (
        CellSpec as CellSpec,
    )
    from sah_bench import (
        InfiniteBench as InfiniteBench,
    )
    from sah_bench import (
        LoftRag as LoftRag,
    )
    from sah_bench import (
        LongBench as LongBench,
    )
    from sah_bench import (
        LongBenchV2 as LongBenchV2,
    )
    from sah_bench import (
        LooGLE as LooGLE,
    )
    from sah_bench import (
        MockBenchmark as MockBenchmark,
    )
    from sah_bench import (
        RequestGroup as RequestGroup,
    )
    from sah_bench import (
        Ruler as Ruler,
    )
    from sah_bench import (
        Ruler16K as Ruler16K,
    )
    from sah_bench import (
        Ruler32K as Ruler32K,
    )
    from sah_bench import (
        SyntheticBenchmark as SyntheticBenchmark,
    )
    from sah_bench import (
        ZeroScrolls as ZeroScrolls,
    )
    from sah_bench import (
        boxed_match_score as boxed_match_score,
    )
    from sah_bench import (
        build_hf_adapter as build_hf_adapter,
    )
    from sah_bench import (
        choice_score as choice_score,
    )
    from sah_bench import (
        classification_score as classification_score,
    )
    from sah_bench import (
        code_sim_score as code_sim_score,
    )
    from sah_bench import (
        collect_cells as collect_cells,
    )
    from sah_bench import (
        count_score as count_score,
    )
    from sah_bench import (
        coverage_score as coverage_score,
    )
    from sah_bench import (
        first_int_score as first_int_score,
    )
    from sah_bench import (
        generate_row as generate_row,
    )
    from sah_bench import (
        get_benchmark as get_benchmark,
    )
    from sah_bench import (
        get_benchmark_class as get_benchmark_class,
    )
    from sah_bench import (
        group_rows as group_rows,
    )
    from sah_bench import (
        kv_retrieval_score as kv_retrieval_score,
    )
    from sah_bench import (
        leaderboard as leaderboard,
    )
    from sah_bench import (
        list_benchmarks as list_benchmarks,
    )
    from sah_bench import (
        math_find_score as math_find_score,
    )
    from sah_bench import (
        option_choice_score as option_choice_score,
    )
    from sah_bench import (
        parse_benchmark_spec as parse_benchmark_spec,
    )
    from sah_bench import (
        qa_f1_score as qa_f1_score,
    )
    from sah_bench import (
        qa_f1_zh_score as qa_f1_zh_score,
    )
    from sah_bench import (
        retrieval_score as retrieval_score,
    )
    from sah_bench import (
        retrieval_zh_score as retrieval_zh_score,
    )
    from sah_bench import (
        rouge_score as rouge_score,
    )
    from sah_bench import (
        rouge_zh_score as rouge_zh_score,
    )
    from sah_bench import (
        string_match_all as string_match_all,
    )
    from sah_bench import (
        string_match_part as string_match_part,
    )
    from sah_bench import (
        subspan_em_score as subspan_em_score,
    )
    from sah_bench import (
        tokenizer_token_counter as tokenizer_token_counter,
    )
    from sah_bench import (
        whitespace_token_count as whitespace_token_count,
    )
    from sah_bench import (
        write_report as write_report,
    )
    from sah_core import (
        AdaptiveSamplingMasker as AdaptiveSamplingMasker,
    )
    from sah_core import (
        AdaptiveSamplingMaskerConfig as AdaptiveSamplingMaskerConfig,
    )
    from sah_core import (
        BlockSparseTopKMasker as BlockSparseTopKMasker,
    )
    from sah_core import (
        BlockSparseTopKMaskerConfig as BlockSparseTopKMaskerConfig,
    )
    from sah_core import (
        CallPlan as CallPlan,
    )
    from sah_core import (
        CausalMasker as CausalMasker,
    )
    from sah_core import (
        CausalMaskerConfig as CausalMaskerConfig,
    )
    from sah_core import (
        DoubleSparsityTopKMasker as DoubleSparsityTopKMasker,
    )
    from sah_core import (
        DoubleSparsityTopKMaskerConfig as DoubleSparsityTopKMaskerConfig,
    )
    from sah_core import (
        FixedMasker as FixedMasker,
    )
    from sah_core import (
        HashAttentionTopKMasker as HashAttentionTopKMasker,
    )
    from sah_core import (
        HashAttentionTopKMaskerConfig as HashAttentionTopKMaskerConfig,
    )
    from sah_core import (
        LocalMasker as LocalMasker,
    )
    from sah_core import (
        LocalMaskerConfig as LocalMaskerConfig,
    )
    from sah_core import (
        MagicPig as MagicPig,
    )
    from sah_core import (
        MagicPigConfig as MagicPigConfig,
    )
    from sah_core import (
        Mask as Mask,
    )
    from sah_core import (
        MaskerConfig as MaskerConfig,
    )
    from sah_core import (
        MicroMetricLogger as MicroMetricLogger,
    )
    from sah_core import (
        NonFiniteInputError as NonFiniteInputError,
    )
    from sah_core import (
        OracleTopK as OracleTopK,
    )
    from sah_core import (
        OracleTopKConfig as OracleTopKConfig,
    )
    from sah_core import (
        OracleTopPMasker as OracleTopPMasker,
    )
    from sah_core import (
        OracleTopPMaskerConfig as OracleTopPMaskerConfig,
    )
    from sah_core import (
        PQCache as PQCache,
    )
    from sah_core import (
        PQCacheConfig as PQCacheConfig,
    )
    from sah_core import (
        QueryChunk as QueryChunk,
    )
    from sah_core import (
        QuestTopKMasker as QuestTopKMasker,
    )
    from sah_core import (
        QuestTopKMaskerConfig as QuestTopKMaskerConfig,
    )
    from sah_core import (
        RandomSamplingMasker as RandomSamplingMasker,
    )
    from sah_core import (
        RandomSamplingMaskerConfig as RandomSamplingMaskerConfig,
    )
    from sah_core import (
        ResearchAttention as ResearchAttention,
    )
    from sah_core import (
        ResearchAttentionConfig as ResearchAttentionConfig,
    )
    from sah_core import (
        ResearchMasker as ResearchMasker,
    )
    from sah_core import (
        SamplingMasker as SamplingMasker,
    )
    from sah_core import (
        SamplingMaskerConfig as SamplingMaskerConfig,
    )
    from sah_core import (
        SinkMasker as SinkMasker,
    )
    from sah_core import (
        SinkMaskerConfig as SinkMaskerConfig,
    )
    from sah_core import (
        SocketMasker as SocketMasker,
    )
    from sah_core import (
        SocketMaskerConfig as SocketMaskerConfig,
    )
    from sah_core import (
        TidalDecodeMasker as TidalDecodeMasker,
    )
    from sah_core import (
        TidalDecodeMaskerConfig as TidalDecodeMaskerConfig,
    )
    from sah_core import (
        TopKMasker as TopKMasker,
    )
    from sah_core import (
        TopKMaskerConfig as TopKMaskerConfig,
    )
    from sah_core import (
        VerticalSlashMasker as VerticalSlashMasker,
    )
    from sah_core import (
        VerticalSlashMaskerConfig as VerticalSlashMaskerConfig,
    )
    from sah_core import (
        attention_backends as attention_backends,
    )
    from sah_core import (
        available_maskers as available_maskers,
    )
    from sah_core import (
        check_choice as check_choice,
    )
    from sah_core import (
        check_float as check_float,
    )
    from sah_core import (
        check_int as check_int,
    )
    from sah_core import (
        check_selection_size as check_selection_size,
    )
    from sah_core import (
        check_size as check_size,
    )
    from sah_core import (
        config_class_for as config_class_for,
    )
    from sah_core import (
        expand_page_scores as expand_page_scores,
    )
    from sah_core import (
        index_attention as index_attention,
    )
    from sah_core import (
        masked_attention as masked_attention,
    )
    from sah_core import (
        masker_class_for as masker_class_for,
    )
    from sah_core import (
        register_attention_backend as register_attention_backend,
    )
    from sah_core import (
        register_masker as register_masker,
    )
    from sah_core import (
        resolve_size as resolve_size,
    )
    from sah_core import (
        run_attention as run_attention,
    )
    from sah_core import (
        unregister_attention_backend as unregister_attention_backend,
    )
    from sah_protocol import (
        BENCHMARKS_ENTRY_POINT_GROUP as BENCHMARKS_ENTRY_POINT_GROUP,
    )
    from sah_protocol import (
        MASKERS_ENTRY_POINT_GROUP as MASKERS_ENTRY_POINT_GROUP,
    )
    from sah_protocol import (
        BenchmarkProtocol as BenchmarkProtocol,
    )
    from sah_protocol import (
        MaskerConfigProtocol as MaskerConfigProtocol,
    )
    from sah_protocol import (
        MaskerProtocol as MaskerProtocol,
    )
    from sah_protocol import (
        ModelAdapter as ModelAdapter,
    )
    from sah_protocol import (
        ModelHubAdapterInterface as ModelHubAdapterInterface,
    )
    from sah_protocol import (
        Request as Request,
    )
    from sah_protocol import (
        RequestResponse as RequestResponse,
    )
    from sah_protocol import (
        ResultRecord as ResultRecord,
    )
    from sah_protocol import (
        SamplingMaskerProtocol as SamplingMaskerProtocol,
    )
    from sah_protocol import (
        ScorerProtocol as ScorerProtocol,
    )
    from sah_protocol import (
        SparseAttentionAdapterInterface as SparseAttentionAdapterInterface,
    )

__all__ = ["REMOVED_NAMES", *_PROVIDED]


def __getattr__(name: str) -> Any:
    if name in REMOVED_NAMES:
        raise ImportError(
            f"sparse_attention_hub.{name} was removed from the API: {REMOVED_NAMES[name]}. "
            "See docs/migration.md."
        )
    if name.startswith("_"):
        raise AttributeError(name)
    provider = _PROVIDED.get(name)
    candidates = (provider,) if provider is not None else _PROVIDERS
    for module_name in candidates:
        module = importlib.import_module(module_name)
        if name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            globals()[name] = value  # cache: later lookups skip the search
            return value
    raise AttributeError(f"module 'sparse_attention_hub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
