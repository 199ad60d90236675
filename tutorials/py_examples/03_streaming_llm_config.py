"""A StreamingLLM-style configuration: attention sinks + a sliding local window.

Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024
(arXiv:2309.17453): keeping the first few tokens ("sinks") plus a recent window preserves
fluency at a fixed attention budget. Here the stack is ``SinkMaskerConfig(4)`` +
``LocalMaskerConfig(32)`` on the built-in ``smollm2-135m``; a ``MicroMetricLogger`` records,
per layer and attention call, the density of the mask and the output error vs dense
attention, so you can see what the budget costs.

Run: ``uv run python tutorials/py_examples/03_streaming_llm_config.py``
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from sparse_attention_hub import (
    LocalMaskerConfig,
    MicroMetricLogger,
    ModelAdapterHF,
    Request,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)

# A context of ~200 tokens, so a 4 + 32 key budget is clearly sparse.
CONTEXT = " ".join(
    f"Day {day}: the lighthouse keeper wrote that the sea was calm and the lamp was clean."
    for day in range(1, 11)
)
QUESTION = "What did the lighthouse keeper write about the sea?"


def main() -> None:
    streaming = ResearchAttentionConfig(
        masker_configs=[SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=32)]
    )
    # The config is plain data: it round-trips through JSON (e.g. for a benchmark matrix).
    as_json = json.dumps(streaming.to_dict())
    assert ResearchAttentionConfig.from_dict(json.loads(as_json)) == streaming
    print(f"config: {as_json}")

    request = Request(context=CONTEXT, questions=QUESTION)
    generation = {"max_new_tokens": 6, "stop": ["\n"]}
    with ModelAdapterHF("smollm2-135m", sparse_attention_config=streaming) as adapter:
        # A second adapter on the same weights, without a sparse config: dense answers.
        with ModelAdapterHF.from_model(adapter.model, adapter.tokenizer) as dense:
            dense_answer = dense.process_request(request, generation_kwargs=generation)
        with tempfile.TemporaryDirectory() as metrics_dir:
            with MicroMetricLogger(metrics_dir):
                sparse_answer = adapter.process_request(request, generation_kwargs=generation)
            lines = Path(metrics_dir, "micro_metrics.jsonl").read_text().splitlines()
        stats = adapter.last_request_stats

    records = [json.loads(line) for line in lines]
    assert stats is not None
    print(f"context tokens: {stats.context_tokens}, sparse run took {stats.total_seconds:.1f} s")
    print(f"dense answer : {dense_answer.responses!r}")
    print(f"sparse answer: {sparse_answer.responses!r}")
    print(f"attention calls recorded: {len(records)}")
    print(f"mean density        : {statistics.mean(r['density'] for r in records):.3f}")
    print(f"mean output error   : {statistics.mean(r['output_error'] for r in records):.3f}")
    recall = statistics.mean(r["attention_mass_recall"] for r in records)
    print(f"mean attention recall: {recall:.3f}")
    assert records and all(0.0 < r["density"] <= 1.0 for r in records)


if __name__ == "__main__":
    main()
