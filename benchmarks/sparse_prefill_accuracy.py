"""Accuracy of the sparse-prefill and TidalDecode maskers on the offline synthetic suite.

SmolLM2-135M (built-in offline model), niah_single / niah_multikey / vt at ~2K tokens, beside
dense and Sink(64)+Local(64): MInference vertical-slash (100 / 200; its defaults 1000 / 6096
cover every key at 2K tokens, i.e. dense), block top-k (FlexPrefill mean pooling and XAttention
antidiagonal, threshold 0.9), all acting in the context prefill, and TidalDecode (256 keys,
question + decode). Prints one line per config with accuracy and density (the micro metrics'
share of the causally allowed pairs).

Run: ``uv run python benchmarks/sparse_prefill_accuracy.py OUT_DIR [--requests 1] [--questions 4]``
(resumable: a rerun into the same folder skips finished cells).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sah_bench.demo import summarize
from sah_bench.executor.executor import BenchmarkExecutor, BenchmarkSpec
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY
from sah_core import (
    BlockSparseTopKMaskerConfig,
    LocalMaskerConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    TidalDecodeMaskerConfig,
    VerticalSlashMaskerConfig,
)

PREFILL = ("prefill",)


def configs() -> dict[str, dict[str, object] | None]:
    return {
        "dense": None,
        "sink_local": ResearchAttentionConfig(
            [SinkMaskerConfig(64), LocalMaskerConfig(64)]
        ).to_dict(),
        "vertical_slash_100_200": ResearchAttentionConfig(
            [VerticalSlashMaskerConfig(vertical_size=100, slash_size=200)], phases=PREFILL
        ).to_dict(),
        "block_topk_mean_default": ResearchAttentionConfig(
            [BlockSparseTopKMaskerConfig()], phases=PREFILL
        ).to_dict(),
        "block_topk_antidiag_0.9": ResearchAttentionConfig(
            [BlockSparseTopKMaskerConfig(scoring="antidiagonal")], phases=PREFILL
        ).to_dict(),
        "tidal_decode_default": ResearchAttentionConfig([TidalDecodeMaskerConfig()]).to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--questions", type=int, default=4)
    args = parser.parse_args()
    matrix = configs()
    executor = BenchmarkExecutor(
        args.out_dir,
        adapter_factory=DEFAULT_ADAPTER_FACTORY,
        backend="inline",
        max_requests=args.requests,
        generation_kwargs={"max_new_tokens": 8},
        request_kwargs={"batch_size": args.questions},
        progress=False,
        micro_metrics=["density"],
    )
    bench = BenchmarkSpec(
        "synthetic",
        ("niah_single", "niah_multikey", "vt"),
        {
            "target_tokens": 2048,
            "num_samples": args.requests,
            "seed": 0,
            "questions_per_context": args.questions,
        },
    )
    started = time.perf_counter()
    results = executor.run(["smollm2-135m"], matrix, [bench])
    for row in summarize(results, list(matrix)):
        print(json.dumps(row.__dict__))
    print(f"seconds {time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
