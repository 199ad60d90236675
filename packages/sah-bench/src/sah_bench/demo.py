"""The offline demo: a built-in model on the synthetic suite, dense vs sparse stacks.

Three method families (``family``): ``selection`` (per-query selection stacks; the default demo,
``family=None``, runs its four classic stacks and leaves out TidalDecode to keep its size),
``eviction`` (KV eviction at a 25% budget: the cache really shrinks, ``kv_mib`` shows it) and
``prefill`` (sparse prefill: the stack also acts on the context).

Sized to finish in a few minutes on a 2-core CPU: short contexts (~2K tokens), a few requests per
task and short answers. Results are an ordinary results folder (resumable, reportable).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import CellResult
from sah_bench.executor.executor import BenchmarkExecutor, BenchmarkSpec
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY

DEMO_MODEL = "smollm2-135m"
#: One needle task whose contexts each hold several needles, every needle asked: one dense
#: prefill of the context serves all its questions, which is what keeps the demo short on a CPU.
DEMO_TASKS: tuple[str, ...] = ("niah_multikey",)
DEMO_QUESTIONS_PER_CONTEXT = 6
#: The method families ``demo --family`` shows.
FAMILIES: tuple[str, ...] = ("selection", "eviction", "prefill")
#: Budget (fraction of the context's keys each layer keeps) of the eviction family.
EVICTION_BUDGET = 0.25


def demo_configs(
    sink: int = 64, window: int = 64, family: str | None = None
) -> dict[str, dict[str, Any] | None]:
    """Dense plus Sink+Local, +OracleTopK 10%, +Quest 10%, +AdaptiveSampling (vAttention-like);
    ``family="selection"`` adds TidalDecode (256 keys, its paper's layer schedule, on its own
    as in the paper); the other families: :func:`eviction_configs`, :func:`prefill_configs`.

    Built through ``sah_core``'s config classes so they are validated, then stored as dicts.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family={family!r} is not allowed: use one of {list(FAMILIES)}")
    if family == "eviction":
        return eviction_configs(sink, window)
    if family == "prefill":
        return prefill_configs(sink, window)
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers.adaptive_sampling import AdaptiveSamplingMaskerConfig
    from sah_core.maskers.local import LocalMaskerConfig
    from sah_core.maskers.oracle_top_k import OracleTopKConfig
    from sah_core.maskers.quest import QuestTopKMaskerConfig
    from sah_core.maskers.sink import SinkMaskerConfig
    from sah_core.maskers.tidal_decode import TidalDecodeMaskerConfig

    def stack(*extra: Any) -> dict[str, Any]:
        base = [SinkMaskerConfig(sink_size=sink), LocalMaskerConfig(window_size=window)]
        return ResearchAttentionConfig(masker_configs=[*base, *extra]).to_dict()

    configs: dict[str, dict[str, Any] | None] = {
        "dense": None,
        "sink_local": stack(),
        "oracle_topk_10pct": stack(OracleTopKConfig(heavy_size=0.1)),
        "quest_10pct": stack(QuestTopKMaskerConfig(heavy_size=0.1, page_size=16, label_bits=32)),
        "adaptive_sampling": stack(
            OracleTopKConfig(heavy_size=0.05),
            AdaptiveSamplingMaskerConfig(
                base_rate_sampling=0.05,
                epsilon=0.25,
                delta=0.25,
                init_offset=sink,
                local_offset=window,
            ),
        ),
    }
    if family == "selection":
        configs["tidal_decode_256"] = ResearchAttentionConfig(
            masker_configs=[TidalDecodeMaskerConfig(heavy_size=256)]
        ).to_dict()
    return configs


def eviction_configs(sink: int = 64, window: int = 64) -> dict[str, dict[str, Any] | None]:
    """Dense, Sink+Local (a selection baseline of similar size) and every eviction method at
    :data:`EVICTION_BUDGET` with its paper's other defaults."""
    from sah_core import ResearchAttentionConfig
    from sah_core.eviction import (
        AdaKVConfig,
        H2OConfig,
        KNormConfig,
        PyramidKVConfig,
        SnapKVConfig,
        StreamingLLMConfig,
        TOVAConfig,
    )
    from sah_core.maskers.local import LocalMaskerConfig
    from sah_core.maskers.sink import SinkMaskerConfig

    budget = EVICTION_BUDGET
    methods = {
        "streaming_llm": StreamingLLMConfig(budget=budget),
        "snapkv": SnapKVConfig(budget=budget),
        "pyramidkv": PyramidKVConfig(budget=budget),
        "adakv": AdaKVConfig(budget=budget),
        "knorm": KNormConfig(budget=budget),
        "tova": TOVAConfig(budget=budget),
        "h2o": H2OConfig(budget=budget),
    }
    sink_local = [SinkMaskerConfig(sink_size=sink), LocalMaskerConfig(window_size=window)]
    configs: dict[str, dict[str, Any] | None] = {
        "dense": None,
        "sink_local": ResearchAttentionConfig(masker_configs=sink_local).to_dict(),
    }
    for name, config in methods.items():
        configs[f"{name}_{int(budget * 100)}pct"] = ResearchAttentionConfig([config]).to_dict()
    return configs


def prefill_configs(sink: int = 64, window: int = 64) -> dict[str, dict[str, Any] | None]:
    """Dense, Sink+Local acting in every phase, and the sparse-prefill maskers (vertical-slash,
    block top-k with mean and antidiagonal pooling) acting in the prefill too."""
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers.local import LocalMaskerConfig
    from sah_core.maskers.sink import SinkMaskerConfig

    every = ("prefill", "question", "decode")
    sink_local = [SinkMaskerConfig(sink_size=sink), LocalMaskerConfig(window_size=window)]
    configs: dict[str, dict[str, Any] | None] = {
        "dense": None,
        "sink_local_prefill": ResearchAttentionConfig(sink_local, phases=every).to_dict(),
    }
    try:
        from sah_core.maskers.block_sparse_topk import BlockSparseTopKMaskerConfig
        from sah_core.maskers.vertical_slash import VerticalSlashMaskerConfig
    except ImportError:  # an older sah-core without the sparse-prefill maskers
        return configs
    configs["vertical_slash"] = ResearchAttentionConfig(
        [VerticalSlashMaskerConfig(vertical_size=100, slash_size=200)], phases=every
    ).to_dict()
    configs["block_topk_0.9"] = ResearchAttentionConfig(
        [BlockSparseTopKMaskerConfig()], phases=every
    ).to_dict()
    configs["xattention_0.9"] = ResearchAttentionConfig(
        [BlockSparseTopKMaskerConfig(scoring="antidiagonal")], phases=every
    ).to_dict()
    return configs


@dataclass
class DemoRow:
    config: str
    accuracy: float | None
    density: float | None
    questions: int
    seconds_per_question: float | None
    #: Mean KV bytes the context held after its prefill (and any eviction), MiB.
    kv_mib: float | None = None


def summarize(results: Sequence[CellResult], configs: Sequence[str]) -> list[DemoRow]:
    rows = []
    for name in configs:
        cells = [r for r in results if r.metrics and r.metrics.get("config") == name]
        metrics = [r.metrics for r in cells if r.metrics]
        scores = [m["score"] for m in metrics if m.get("score") is not None]
        dens = [m["density"] for m in metrics if m.get("density") is not None]
        secs = [m.get("mean_total_seconds", 0.0) for m in metrics]
        kv = [m["mean_context_kv_bytes"] for m in metrics if m.get("mean_context_kv_bytes")]
        before = [
            m["mean_context_kv_bytes_before_eviction"]
            for m in metrics
            if m.get("mean_context_kv_bytes_before_eviction")
        ]
        if not dens and kv and before and sum(kv) < sum(before):
            dens = [sum(kv) / sum(before)]  # an eviction alone: the keys each query may see
        rows.append(
            DemoRow(
                config=name,
                accuracy=sum(scores) / len(scores) if scores else None,
                density=sum(dens) / len(dens) if dens else None,
                questions=sum(int(m.get("n_questions", 0)) for m in metrics),
                seconds_per_question=sum(secs) / len(secs) if secs else None,
                kv_mib=sum(kv) / len(kv) / 2**20 if kv else None,
            )
        )
    return rows


def run_demo(
    out_dir: Path,
    *,
    model: str = DEMO_MODEL,
    requests_per_task: int = 1,
    target_tokens: int = 2048,
    tasks: Sequence[str] = DEMO_TASKS,
    max_new_tokens: int = 8,
    questions_per_context: int = DEMO_QUESTIONS_PER_CONTEXT,
    adapter_factory: str = DEFAULT_ADAPTER_FACTORY,
    progress: bool = True,
    family: str | None = None,
) -> tuple[list[DemoRow], list[CellResult], float]:
    """Run the demo matrix (inline: one process, the model loaded once per config).

    The eviction family answers one question per batch (TOVA and H2O evict while decoding).
    """
    configs = demo_configs(family=family)
    batch_size = 1 if family == "eviction" else questions_per_context
    executor = BenchmarkExecutor(
        out_dir,
        adapter_factory=adapter_factory,
        backend="inline",
        max_requests=requests_per_task,
        generation_kwargs={"max_new_tokens": max_new_tokens},
        request_kwargs={"batch_size": batch_size},
        progress=progress,
    )
    bench = BenchmarkSpec(
        "synthetic",
        tuple(tasks),
        {
            "target_tokens": target_tokens,
            "num_samples": requests_per_task,
            "seed": 0,
            "questions_per_context": questions_per_context,
        },
    )
    started = time.perf_counter()
    results = executor.run([model], configs, [bench])
    return summarize(results, list(configs)), results, time.perf_counter() - started
