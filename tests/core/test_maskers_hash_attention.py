"""HashAttention top-k masker against a naive per-row code-matching reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import naive_refs_b as refs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from sah_core import MaskerConfig, ResearchMasker
from sah_core.maskers.hash_attention import (
    HashAttentionTopKMasker,
    HashAttentionTopKMaskerConfig,
)

BITS, HIDDEN, LAYERS, D = 8, 5, 2, 8


def random_weights(
    seed: int, layers: list[int], hq: int, hk: int, d: int = D, mlp_layers: int = LAYERS
) -> dict[int, dict[str, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    out: dict[int, dict[str, list[torch.Tensor]]] = {}
    for layer in layers:
        entry: dict[str, list[torch.Tensor]] = {}
        for side, heads in (("query", hq), ("key", hk)):
            dims = [d] + [HIDDEN] * (mlp_layers - 1) + [BITS]
            entry[f"{side}_matrix"] = [
                torch.randn(heads, dims[j], dims[j + 1], generator=gen) for j in range(mlp_layers)
            ]
            entry[f"{side}_bias"] = [
                torch.randn(heads, dims[j + 1], generator=gen) * 0.1 for j in range(mlp_layers)
            ]
        out[layer] = entry
    return out


def make_config(weights: Any = None, heavy: int | float = 4, **kw: Any) -> Any:
    return HashAttentionTopKMaskerConfig(
        heavy_size=heavy,
        hat_bits=BITS,
        hat_mlp_layers=LAYERS,
        hat_mlp_hidden_size=HIDDEN,
        hat_mlp_activation="relu",
        hat_weights=weights,
        **kw,
    )


def naive_codes(
    x: torch.Tensor, matrices: list[torch.Tensor], biases: list[torch.Tensor], head: int
) -> list[int]:
    """One vector through one head's MLP (relu between layers) -> list of +-1 bits."""
    h = x.double()
    for j, (w, b) in enumerate(zip(matrices, biases, strict=True)):
        h = h @ w[head].double() + b[head].double()
        if j < len(matrices) - 1:
            h = torch.relu(h)
    return [1 if float(v) >= 0 else -1 for v in h]


def naive_scores(
    queries: torch.Tensor, keys: torch.Tensor, layer: dict[str, list[torch.Tensor]]
) -> torch.Tensor:
    b, hq, q, _ = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    per_query_head = layer["key_matrix"][0].shape[0] == hq
    out = torch.zeros(b, hq, q, k, dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            kv = hi // group
            key_head = hi if per_query_head else kv
            key_codes = [
                naive_codes(keys[bi, kv, ki], layer["key_matrix"], layer["key_bias"], key_head)
                for ki in range(k)
            ]
            for qi in range(q):
                qc = naive_codes(
                    queries[bi, hi, qi], layer["query_matrix"], layer["query_bias"], hi
                )
                for ki in range(k):
                    out[bi, hi, qi, ki] = sum(
                        int(a == c) for a, c in zip(qc, key_codes[ki], strict=True)
                    )
    return out


def test_invalid_configs_name_the_field(tmp_path: Path) -> None:
    weights = random_weights(0, [0], 2, 2)
    with pytest.raises(ValueError, match="hat_bits"):
        HashAttentionTopKMaskerConfig(heavy_size=2, hat_bits=0, hat_weights=weights)
    with pytest.raises(ValueError, match="hat_mlp_activation"):
        HashAttentionTopKMaskerConfig(heavy_size=2, hat_mlp_activation="swish", hat_weights=weights)
    with pytest.raises(ValueError, match="hat_mlp_layers"):
        HashAttentionTopKMaskerConfig(heavy_size=2, hat_mlp_layers=0, hat_weights=weights)
    with pytest.raises(ValueError, match="exactly one"):
        HashAttentionTopKMaskerConfig(heavy_size=2)
    with pytest.raises(ValueError, match="exactly one"):
        HashAttentionTopKMaskerConfig(
            heavy_size=2, hat_weights=weights, hat_weight_file="w.safetensors"
        )
    with pytest.raises(ValueError, match="safetensors"):
        HashAttentionTopKMaskerConfig(heavy_size=2, hat_weight_file="weights.pt")
    with pytest.raises(ValueError, match="no such file"):
        HashAttentionTopKMasker(
            HashAttentionTopKMaskerConfig(
                heavy_size=2, hat_weight_file=str(tmp_path / "x.safetensors")
            )
        )
    # wrong output width: hat_bits mismatch
    with pytest.raises(ValueError, match="hat_bits"):
        HashAttentionTopKMasker(
            HashAttentionTopKMaskerConfig(
                heavy_size=2,
                hat_bits=BITS + 1,
                hat_mlp_layers=LAYERS,
                hat_mlp_hidden_size=HIDDEN,
                hat_weights=weights,
            )
        )


def test_unknown_layer_is_a_clear_error() -> None:
    masker = HashAttentionTopKMasker(make_config(random_weights(0, [0], 2, 2)))
    queries, keys, values = refs.make_qkv(0, 1, 2, 2, 1, 10, D)
    with pytest.raises(ValueError, match="layer_idx=3"):
        refs.call_masker(masker, queries, keys, values, layer_idx=3)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 1000),
    hkv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2]),
    key_heads_per_query=st.booleans(),
    q=st.integers(1, 4),
    k=st.integers(4, 14),
    heavy=st.integers(1, 8),
)
def test_matches_naive_reference(
    seed: int, hkv: int, group: int, key_heads_per_query: bool, q: int, k: int, heavy: int
) -> None:
    hq = hkv * group
    weights = random_weights(seed, [0, 1], hq, hq if key_heads_per_query else hkv)
    queries, keys, values = refs.make_qkv(seed, 1, hq, hkv, q, k, D)
    attn = refs.causal_mask(1, q, k)
    masker = HashAttentionTopKMasker(make_config(weights, heavy))
    mask = refs.call_masker(masker, queries, keys, values, attn, {}, layer_idx=1)
    if heavy >= k:
        assert mask.is_full()
        return
    ref = naive_scores(queries, keys, weights[1])
    refs.check_valid_topk(refs.selected(mask), ref, refs.allowed_keys(attn, ref.shape), heavy)
    call = refs.plan(queries, keys, values, attn, layer_idx=1)
    mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
    assert torch.equal(mine.double(), ref)


def test_safetensors_file_equals_dict(tmp_path: Path) -> None:
    weights = random_weights(5, [0, 2], 4, 2)
    flat = {}
    for layer, parts in weights.items():
        for side in ("query", "key"):
            for j, (w, b) in enumerate(
                zip(parts[f"{side}_matrix"], parts[f"{side}_bias"], strict=True)
            ):
                flat[f"layer.{layer}.{side}.{j}.weight"] = w.contiguous()
                flat[f"layer.{layer}.{side}.{j}.bias"] = b.contiguous()
    path = tmp_path / "hat.safetensors"
    save_file(flat, str(path))
    from_file = HashAttentionTopKMasker(
        HashAttentionTopKMaskerConfig(
            heavy_size=3,
            hat_bits=BITS,
            hat_mlp_layers=LAYERS,
            hat_mlp_hidden_size=HIDDEN,
            hat_mlp_activation="relu",
            hat_weight_file=str(path),
        )
    )
    from_dict = HashAttentionTopKMasker(make_config(weights, 3))
    queries, keys, values = refs.make_qkv(2, 1, 4, 2, 3, 12, D)
    for layer in (0, 2):
        a = refs.call_masker(from_file, queries, keys, values, layer_idx=layer)
        b = refs.call_masker(from_dict, queries, keys, values, layer_idx=layer)
        assert torch.equal(refs.selected(a), refs.selected(b))


def test_config_round_trip_through_json_lists() -> None:
    config = make_config(random_weights(1, [0], 4, 2), 3)
    again = MaskerConfig.from_dict(config.to_dict())  # tensors become nested lists, keys strings
    masker = ResearchMasker.create_from_config(again)
    assert isinstance(masker, HashAttentionTopKMasker)
    queries, keys, values = refs.make_qkv(2, 1, 4, 2, 3, 12, D)
    a = refs.call_masker(masker, queries, keys, values)
    b = refs.call_masker(HashAttentionTopKMasker(config), queries, keys, values)
    assert torch.equal(refs.selected(a), refs.selected(b))


def test_common_properties() -> None:
    weights = random_weights(3, [0], 4, 2)
    refs.check_common_properties(
        lambda: HashAttentionTopKMasker(make_config(weights, 5)),
        make_config(weights, 1.0),
        tied_scores=True,
    )


def test_state_reuse_matches_recompute() -> None:
    weights = random_weights(4, [0], 4, 2)
    refs.check_state_reuse(lambda: HashAttentionTopKMasker(make_config(weights, 5)))


def test_batched_with_padding_equals_one_by_one() -> None:
    weights = random_weights(4, [0], 4, 2)
    refs.check_batch_safe(lambda: HashAttentionTopKMasker(make_config(weights, 5)), d=D)
