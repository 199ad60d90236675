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
# # 01 · Sparse attention from the ground up
#
# This notebook uses no model: only random queries, keys and values. It shows the four pieces
# everything else is built on:
#
# 1. `Mask` — the value type of the mask contract: logical shape `[B, H, Q, K]`, entry `0` =
#    key not attended, `p` in `(0, 1]` = attended with importance weight `1/p`;
# 2. maskers — small config dataclasses (`SinkMaskerConfig`, `LocalMaskerConfig`,
#    `OracleTopKConfig`, ...) each adding keys to the mask built by the ones before;
# 3. `ResearchAttention` — runs a masker stack and exact attention under the final mask, with
#    the transformers attention-function signature;
# 4. `MicroMetricLogger` — per-call density, output error and attention-mass recall vs dense.

# %%
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

# %% [markdown]
# ## 1. `Mask`: four representations of one value
#
# `full` and `empty` store nothing, `dense` stores a `[B, H, Q, K]` tensor, and **index form**
# stores, per row, the selected key indices (padded with `-1`) and their weights. Union is
# `clamp(a + b, 0, 1)`; masks are values, so `merge` returns a new mask.

# %%
shape = (1, 1, 2, 6)  # B=1, H=1, two query rows, six keys
indices = torch.tensor([[[[0, 3, -1], [1, 2, 5]]]])
weights = torch.tensor([[[[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]]])
a = Mask.from_index(indices, weights, shape)
b = Mask.from_dense(torch.tensor([[[[0.0, 0.0, 0.0, 1.0, 1.0, 0.0]] * 2]]))
union = a.merge(b)
print(a)
print("a as dense:\n", a.get_dense_mask()[0, 0])
print("a ∪ b:\n", union.get_dense_mask()[0, 0])
print("density of a:", a.get_density(), "| of a ∪ b:", union.get_density())
print("full / empty:", Mask.full(shape).representation, Mask.empty(shape).representation)

# %% [markdown]
# ## 2. A masker stack
#
# Sink + local window + oracle top-k on a 128-token prefill with 4 query heads sharing 2 KV
# heads. Sizes are `int` (a count) or `float` in `(0, 1]` (a fraction of the key length).
# Every masker is registered by its config class name; `available_maskers()` lists them.

# %%
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

# %% [markdown]
# ## 3. Which keys were selected?
#
# Head 0 of the mask: the sink columns on the left, the local band along the diagonal, and the
# oracle's picks scattered below it.

# %%
selected = mask.get_dense_mask()[0, 0].numpy()
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(selected, cmap="Greys", interpolation="nearest")
ax.set_xlabel("key position")
ax.set_ylabel("query position")
ax.set_title("Sink(4) + Local(16) + OracleTopK(10%) — head 0")
plt.show()

# %% [markdown]
# ## 4. Attention under the mask, and its fidelity
#
# `custom_attention` has transformers' attention-function signature (module, query, key, value,
# attention_mask, scaling, dropout, ...) and returns `[B, Q, H, D]`. Inside a
# `MicroMetricLogger` context every call appends one JSON line with its density, relative
# output error vs dense attention and the share of dense attention mass the mask keeps.
#
# A sampling masker (here `RandomSamplingMaskerConfig`) keeps keys with probability `p` and
# weights them by `1/p`, an unbiased estimate; at most one per stack.

# %%
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

# %% [markdown]
# Oracle top-k keeps the most attention mass for its budget, so its output error is the
# lowest of the three — the bound that approximate top-k methods (Quest, HashAttention, Double
# Sparsity, ...) chase. See `docs/maskers.md` for every masker.
