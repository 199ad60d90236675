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
# # 03 · HashAttention top-k through the adapter
#
# HashAttention (Desai et al., *HashAttention: Semantic Sparsity for Faster Inference*,
# arXiv:2412.14468) maps queries and keys through small learned MLPs to bit codes and keeps the
# keys whose codes agree most with the query's. The masker reads the MLP weights from a
# `.safetensors` file with tensors `layer.{i}.query.{j}.weight` `[H, in, out]`,
# `layer.{i}.query.{j}.bias` `[H, out]` and the same with `key`, for every decoder layer `i` and
# MLP layer `j`.
#
# Trained weights come from the HashAttention authors' training recipe; here the notebook
# writes **random** weights, so the selection is only as good as a random hash — the point is
# the plumbing, and the micro metrics make the (lack of) quality visible.

# %%
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

# %% [markdown]
# Load the model first (dense-only adapter) to read its attention geometry: layers, query
# heads, KV heads and head dimension.

# %%
dense_adapter = ModelAdapterHF("smollm2-135m")
cfg = dense_adapter.model.config
layers, q_heads, kv_heads = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // q_heads
print(f"{layers} layers, {q_heads} query heads, {kv_heads} KV heads, head_dim {head_dim}")

# %% [markdown]
# Write the weight file: a 2-layer MLP (`head_dim -> 32 -> 32 bits`) per head, for queries
# (one per query head) and keys (one per KV head, shared by its query group).

# %%
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

# %%
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
generation = {"max_new_tokens": 8, "stop": ["\n"]}

# %%
dense = dense_adapter.process_request(request, generation_kwargs=generation)
with (
    ModelAdapterHF.from_model(
        dense_adapter.model, dense_adapter.tokenizer, hash_stack
    ) as sparse_adapter,
    MicroMetricLogger(work_dir) as metrics,
):
    sparse = sparse_adapter.process_request(request, generation_kwargs=generation)
dense_adapter.close()

records = [json.loads(line) for line in metrics.path.read_text().splitlines()]
for question, d, s in zip(
    request.question_list, dense.response_list, sparse.response_list, strict=True
):
    print(f"{question}\n  dense : {d!r}\n  sparse: {s!r}")
print(f"{len(records)} attention calls in sparse mode")
for metric in ("density", "output_error", "attention_mass_recall"):
    print(f"mean {metric}: {statistics.mean(r[metric] for r in records):.3f}")

# %% [markdown]
# With random weights the recall is roughly what a random choice of 16 keys would give.
# Replace `weight_file` with trained HashAttention weights (same tensor names) to get the
# method's real selection. The key codes are cached per layer in the request's
# `sparse_meta_data`, so a decode step hashes only the new key.

# %%
scratch.cleanup()  # the weight file and the metrics
