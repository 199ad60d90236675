"""A matrix's predictions do not depend on context sharing nor on what ran before it.

A sampling masker (AdaptiveSampling, the demo's vAttention-like stack) draws from the global
torch RNG, so without a fixed RNG state per request its answers would depend on everything the
process did before: the other arm of ``benchmarks/bench_matrix.py``, an earlier matrix, a
resumed run. Tiny random Llama (tests/adapters/adapter_testkit.py), a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from adapter_testkit import build_tokenizer, tiny_model

from sah_bench import BenchmarkExecutor, BenchmarkSpec

FACTORY = "test_executor_sharing:tiny_adapter"
BENCH = BenchmarkSpec(
    "synthetic",
    ("niah_multikey",),
    {"num_samples": 1, "target_tokens": 160, "seed": 0, "questions_per_context": 3},
)
_TOKENIZER: list[Any] = []


def tiny_adapter(model_name: str, sparse_config: dict[str, Any] | None, **_: Any) -> Any:
    """Adapter factory of these tests: every config over the one tiny Llama (so the executor
    gives them one shared context store)."""
    from sah_adapters import ModelAdapterHF
    from sah_core import ResearchAttentionConfig

    if not _TOKENIZER:
        _TOKENIZER.append(build_tokenizer(chat_template=True))
    config = None if sparse_config is None else ResearchAttentionConfig.from_dict(sparse_config)
    return ModelAdapterHF.from_model(tiny_model("llama"), _TOKENIZER[0], config, model_name)


def _configs() -> dict[str, dict[str, Any] | None]:
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers import LocalMaskerConfig, OracleTopKConfig, SinkMaskerConfig
    from sah_core.maskers.adaptive_sampling import AdaptiveSamplingMaskerConfig

    def stack(*extra: Any) -> dict[str, Any]:
        base = [SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=4)]
        return ResearchAttentionConfig(masker_configs=[*base, *extra]).to_dict()

    return {
        "dense": None,
        "oracle": stack(OracleTopKConfig(heavy_size=0.1)),
        "sampling": stack(
            OracleTopKConfig(heavy_size=0.05),
            AdaptiveSamplingMaskerConfig(
                base_rate_sampling=0.05, epsilon=0.25, delta=0.25, init_offset=2, local_offset=4
            ),
        ),
    }


def _predictions(out: Path, share: bool) -> tuple[list[str], int]:
    executor = BenchmarkExecutor(
        out,
        adapter_factory=FACTORY,
        backend="inline",
        generation_kwargs={"max_new_tokens": 6},
        request_kwargs={"batch_size": 3},
        progress=False,
        share_context=share,
    )
    results = executor.run(["tiny"], _configs(), [BENCH])
    assert [r.status for r in results] == ["done"] * 3, [r.error for r in results]
    frame = pd.concat(pd.read_parquet(p) for p in sorted(out.rglob("raw_results.parquet")))
    frame = frame.sort_values(["config", "request_id"])
    hits = int(frame["extra"].str.contains('"context_cache_hit": true').sum())
    return frame["prediction"].tolist(), hits


def test_shared_and_separate_prefills_answer_alike_whatever_ran_before(tmp_path: Path) -> None:
    pytest.importorskip("sah_adapters")
    shared, hits = _predictions(tmp_path / "shared", share=True)
    assert hits == 2 * 3  # two of three configs answered from the store
    torch.rand(12_345)  # other work in the process moves the global RNG on
    separate, none = _predictions(tmp_path / "separate", share=False)
    assert none == 0
    assert separate == shared
    torch.manual_seed(987)
    state = torch.get_rng_state()
    again, _ = _predictions(tmp_path / "again", share=True)
    assert again == shared
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left as it was
