"""The offline demo: a built-in model on the synthetic suite, dense vs four sparse stacks.

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


def demo_configs(sink: int = 64, window: int = 64) -> dict[str, dict[str, Any] | None]:
    """Dense plus Sink+Local, +OracleTopK 10%, +Quest 10%, +AdaptiveSampling (vAttention-like).

    Built through ``sah_core``'s config classes so they are validated, then stored as dicts.
    """
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers.adaptive_sampling import AdaptiveSamplingMaskerConfig
    from sah_core.maskers.local import LocalMaskerConfig
    from sah_core.maskers.oracle_top_k import OracleTopKConfig
    from sah_core.maskers.quest import QuestTopKMaskerConfig
    from sah_core.maskers.sink import SinkMaskerConfig

    def stack(*extra: Any) -> dict[str, Any]:
        base = [SinkMaskerConfig(sink_size=sink), LocalMaskerConfig(window_size=window)]
        return ResearchAttentionConfig(masker_configs=[*base, *extra]).to_dict()

    return {
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


@dataclass
class DemoRow:
    config: str
    accuracy: float | None
    density: float | None
    questions: int
    seconds_per_question: float | None


def summarize(results: Sequence[CellResult], configs: Sequence[str]) -> list[DemoRow]:
    rows = []
    for name in configs:
        cells = [r for r in results if r.metrics and r.metrics.get("config") == name]
        metrics = [r.metrics for r in cells if r.metrics]
        scores = [m["score"] for m in metrics if m.get("score") is not None]
        dens = [m["density"] for m in metrics if m.get("density") is not None]
        secs = [m.get("mean_total_seconds", 0.0) for m in metrics]
        rows.append(
            DemoRow(
                config=name,
                accuracy=sum(scores) / len(scores) if scores else None,
                density=sum(dens) / len(dens) if dens else None,
                questions=sum(int(m.get("n_questions", 0)) for m in metrics),
                seconds_per_question=sum(secs) / len(secs) if secs else None,
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
) -> tuple[list[DemoRow], list[CellResult], float]:
    """Run the demo matrix (inline: one process, the model loaded once per config)."""
    configs = demo_configs()
    executor = BenchmarkExecutor(
        out_dir,
        adapter_factory=adapter_factory,
        backend="inline",
        max_requests=requests_per_task,
        generation_kwargs={"max_new_tokens": max_new_tokens},
        request_kwargs={"batch_size": questions_per_context},
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
