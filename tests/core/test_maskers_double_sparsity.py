"""Double Sparsity top-k masker against a naive per-row channel reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import naive_refs_b as refs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sah_core import MaskerConfig, ResearchMasker
from sah_core.maskers.double_sparsity import (
    DoubleSparsityTopKMasker,
    DoubleSparsityTopKMaskerConfig,
)

D = 8


def write_channels(
    path: Path, seed: int, layers: list[int], heads: int, selection: str = "qk_proj"
) -> dict[int, list[list[int]]]:
    gen = torch.Generator().manual_seed(seed)
    per_layer = {
        layer: [torch.randperm(D, generator=gen).tolist() for _ in range(heads)] for layer in layers
    }
    data = {f"model.layers.{i}.self_attn.{selection}": v for i, v in per_layer.items()}
    path.write_text(json.dumps(data))
    return per_layer


def naive_quantize(row: torch.Tensor, bits: int) -> torch.Tensor:
    if bits >= 32:
        return row
    levels = 2 ** (bits - 1) - 1
    step = float(row.abs().max()) / levels
    if step == 0:
        return row
    return torch.tensor([round(float(v) / step) * step for v in row], dtype=row.dtype)


def naive_scores(
    queries: torch.Tensor,
    keys: torch.Tensor,
    lists: list[list[int]] | None,
    group_factor: int,
    bits: int,
) -> torch.Tensor:
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    r = max(1, d // group_factor)
    out = torch.zeros(b, hq, q, k, dtype=torch.float64)
    for bi in range(b):
        for hi in range(hq):
            kv = hi // group
            if lists is None:
                importance = [
                    float(queries[bi, hi, :, c].abs().mean() * keys[bi, kv, :, c].abs().mean())
                    for c in range(d)
                ]
                chans = sorted(range(d), key=lambda c: -importance[c])[:r]
            else:
                chans = lists[hi if len(lists) == hq else kv][:r]
            for ki in range(k):
                label = naive_quantize(keys[bi, kv, ki, chans].double(), bits)
                for qi in range(q):
                    out[bi, hi, qi, ki] = float(queries[bi, hi, qi, chans].double() @ label)
    return out


def test_invalid_configs_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="group_factor"):
        DoubleSparsityTopKMaskerConfig(heavy_size=2, group_factor=0)
    with pytest.raises(ValueError, match="label_bits"):
        DoubleSparsityTopKMaskerConfig(heavy_size=2, label_bits=64)
    with pytest.raises(ValueError, match="channel_selection"):
        DoubleSparsityTopKMaskerConfig(heavy_size=2, channel_selection="v_proj")
    with pytest.raises(ValueError, match="sorted_channel_file"):
        DoubleSparsityTopKMaskerConfig(heavy_size=2, sorted_channel_file=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no such file"):
        DoubleSparsityTopKMasker(
            DoubleSparsityTopKMaskerConfig(
                heavy_size=2, sorted_channel_file=str(tmp_path / "missing.json")
            )
        )


def test_missing_layer_and_bad_lists_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "channels.json"
    write_channels(path, 0, [0], 3)  # 3 lists: neither Hq=4 nor Hkv=2
    masker = DoubleSparsityTopKMasker(
        DoubleSparsityTopKMaskerConfig(heavy_size=2, sorted_channel_file=str(path))
    )
    queries, keys, values = refs.make_qkv(0, 1, 4, 2, 1, 10, D)
    with pytest.raises(ValueError, match="head lists"):
        refs.call_masker(masker, queries, keys, values, layer_idx=0)
    with pytest.raises(ValueError, match="layer_idx=5"):
        refs.call_masker(masker, queries, keys, values, layer_idx=5)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 1000),
    hkv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 2]),
    per_query_head=st.booleans(),
    q=st.integers(1, 4),
    k=st.integers(4, 14),
    heavy=st.integers(1, 8),
    group_factor=st.sampled_from([1, 2, 4]),
    bits=st.sampled_from([32, 16, 4]),
    use_file=st.booleans(),
)
def test_matches_naive_reference(
    tmp_path_factory: Any,
    seed: int,
    hkv: int,
    group: int,
    per_query_head: bool,
    q: int,
    k: int,
    heavy: int,
    group_factor: int,
    bits: int,
    use_file: bool,
) -> None:
    hq = hkv * group
    path = tmp_path_factory.mktemp("ds") / "channels.json"
    lists = write_channels(path, seed, [0, 1], hq if per_query_head else hkv)[1]
    queries, keys, values = refs.make_qkv(seed, 2, hq, hkv, q, k, D)
    attn = refs.causal_mask(2, q, k)
    config = DoubleSparsityTopKMaskerConfig(
        heavy_size=heavy,
        sorted_channel_file=str(path) if use_file else None,
        group_factor=group_factor,
        label_bits=bits,
    )
    masker = DoubleSparsityTopKMasker(config)
    mask = refs.call_masker(masker, queries, keys, values, attn, {}, layer_idx=1)
    if heavy >= k:
        assert mask.is_full()
        return
    ref = naive_scores(queries, keys, lists if use_file else None, group_factor, bits)
    refs.check_valid_topk(refs.selected(mask), ref, refs.allowed_keys(attn, ref.shape), heavy)
    call = refs.plan(queries, keys, values, attn, layer_idx=1)
    mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
    torch.testing.assert_close(mine.double(), ref, rtol=1e-4, atol=1e-4)


def test_each_layer_uses_its_own_channels(tmp_path: Path) -> None:
    # layer 0 keeps channel 0 only, layer 1 channel 1 only: the selections must differ and
    # each must follow its own layer's channel
    path = tmp_path / "channels.json"
    data = {
        "model.layers.0.self_attn.qk_proj": [[0, 1, 2, 3, 4, 5, 6, 7]],
        "model.layers.1.self_attn.qk_proj": [[1, 0, 2, 3, 4, 5, 6, 7]],
    }
    path.write_text(json.dumps(data))
    config = DoubleSparsityTopKMaskerConfig(
        heavy_size=3, sorted_channel_file=str(path), group_factor=D, label_bits=32
    )
    masker = DoubleSparsityTopKMasker(config)
    queries, keys, values = refs.make_qkv(7, 1, 1, 1, 1, 16, D)
    queries[..., :2] = 1.0
    meta: dict[Any, Any] = {}
    picks = {}
    for layer in (0, 1):
        mask = refs.call_masker(masker, queries, keys, values, None, meta, layer_idx=layer)
        picks[layer] = set(refs.selected(mask)[0, 0, 0].nonzero().flatten().tolist())
        expected = set(keys[0, 0, :, layer].topk(3).indices.tolist())
        assert picks[layer] == expected
    assert picks[0] != picks[1]


def test_config_round_trip_and_registry(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_channels(path, 0, [0], 2, "k_proj")
    config = DoubleSparsityTopKMaskerConfig(
        heavy_size=0.5, sorted_channel_file=str(path), channel_selection="k_proj"
    )
    again = MaskerConfig.from_dict(config.to_dict())
    assert again == config
    assert isinstance(ResearchMasker.create_from_config(again), DoubleSparsityTopKMasker)


def test_common_properties(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_channels(path, 1, [0], 2)
    refs.check_common_properties(
        lambda: DoubleSparsityTopKMasker(
            DoubleSparsityTopKMaskerConfig(
                heavy_size=5, sorted_channel_file=str(path), group_factor=2
            )
        ),
        DoubleSparsityTopKMaskerConfig(heavy_size=1.0, sorted_channel_file=str(path)),
    )


def test_common_properties_without_file() -> None:
    refs.check_common_properties(
        lambda: DoubleSparsityTopKMasker(
            DoubleSparsityTopKMaskerConfig(heavy_size=5, group_factor=2)
        ),
        DoubleSparsityTopKMaskerConfig(heavy_size=1.0),
    )


def test_state_reuse_matches_recompute(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_channels(path, 2, [0], 4)  # per query head lists (Hq = 4, Hkv = 2)
    refs.check_state_reuse(
        lambda: DoubleSparsityTopKMasker(
            DoubleSparsityTopKMaskerConfig(
                heavy_size=5, sorted_channel_file=str(path), group_factor=2, label_bits=8
            )
        )
    )


@pytest.mark.parametrize("use_file", [True, False])
def test_batched_with_padding_equals_one_by_one(tmp_path: Path, use_file: bool) -> None:
    path = tmp_path / "c.json"
    write_channels(path, 2, [0], 4)
    refs.check_batch_safe(
        lambda: DoubleSparsityTopKMasker(
            DoubleSparsityTopKMaskerConfig(
                heavy_size=5,
                sorted_channel_file=str(path) if use_file else None,
                group_factor=2,
                label_bits=8,
            )
        ),
        d=D,
    )
