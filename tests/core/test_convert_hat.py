"""HashAttention checkpoint converter: the authors' state dict -> our safetensors layout.

The reference is the training code's own structure, rebuilt here: per layer, per query head,
``nn.Sequential(Linear, SiLU, Linear, SiLU, Linear)`` for queries and keys; signatures are the
signs of their outputs, and a key's score is the number of matching bits.
"""

from __future__ import annotations

from pathlib import Path

import naive_refs_b as refs
import pytest
import torch
from torch import nn

from sah_core.hat_convert import convert_hat_checkpoint
from sah_core.maskers.hash_attention import (
    HashAttentionTopKMasker,
    HashAttentionTopKMaskerConfig,
)

HQ, HKV, D, HIDDEN, BITS = 4, 2, 8, 6, 16


class _Payload:
    """Stands for any object whose unpickling runs code."""


def _mlp(depth: int) -> nn.Sequential:
    if depth == 1:
        return nn.Sequential(nn.Linear(D, BITS))
    dims = [D] + [HIDDEN] * (depth - 1) + [BITS]
    modules: list[nn.Module] = []
    for n in range(depth):
        modules.append(nn.Linear(dims[n], dims[n + 1]))
        if n < depth - 1:
            modules.append(nn.SiLU())
    return nn.Sequential(*modules)


class _LayerHash(nn.Module):
    """The attribute names of the training code, so state_dict() keys match its checkpoints."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.learning_to_hash_transformation_k = nn.ModuleList([_mlp(depth) for _ in range(HQ)])
        self.learning_to_hash_transformation_q = nn.ModuleList([_mlp(depth) for _ in range(HQ)])


def _checkpoint(tmp_path: Path, depth: int, layers: int = 2) -> tuple[nn.ModuleList, Path]:
    torch.manual_seed(depth)
    modules = nn.ModuleList([_LayerHash(depth) for _ in range(layers)])
    path = tmp_path / f"usa-{depth}.pt"
    torch.save(modules.state_dict(), path)
    return modules, path


def _reference_scores(layer: _LayerHash, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """[B, Hq, Q, K] matching-bit counts through the original MLPs (keys repeated per group)."""
    b, hq, q, _ = queries.shape
    k = keys.shape[2]
    out = torch.zeros(b, hq, q, k)
    with torch.no_grad():
        for head in range(hq):
            kv = head // (hq // keys.shape[1])
            qc = torch.sign(layer.learning_to_hash_transformation_q[head](queries[:, head]))
            kc = torch.sign(layer.learning_to_hash_transformation_k[head](keys[:, kv]))
            out[:, head] = (qc[:, :, None, :] == kc[:, None, :, :]).sum(-1).float()
    return out


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_round_trip_signatures_match_the_original_mlps(tmp_path: Path, depth: int) -> None:
    modules, checkpoint = _checkpoint(tmp_path, depth)
    target = tmp_path / "hat.safetensors"
    info = convert_hat_checkpoint(checkpoint, target)
    assert (info.layers, info.query_heads, info.key_heads) == ([0, 1], HQ, HQ)
    assert (info.head_dim, info.hat_bits, info.hat_mlp_layers) == (D, BITS, depth)
    config = HashAttentionTopKMaskerConfig(
        heavy_size=3,
        hat_bits=info.hat_bits,
        hat_mlp_layers=info.hat_mlp_layers,
        hat_mlp_hidden_size=info.hat_mlp_hidden_size,
        hat_mlp_activation=info.hat_mlp_activation,
        hat_weight_file=str(target),
    )
    masker = HashAttentionTopKMasker(config)
    queries, keys, values = refs.make_qkv(depth, 1, HQ, HKV, 3, 11, D)
    for layer_idx in (0, 1):
        call = refs.plan(queries, keys, values, None, layer_idx=layer_idx)
        mine = masker.key_scores(call, call.query_chunks()[0], masker.prepare(call))
        expected = _reference_scores(modules[layer_idx], queries, keys)
        assert torch.equal(mine, expected)
        mask = refs.call_masker(masker, queries, keys, values, layer_idx=layer_idx)
        refs.check_valid_topk(
            refs.selected(mask), expected.double(), torch.ones_like(expected, dtype=torch.bool), 3
        )


def test_pickle_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "code.pt"
    # pickled as "import this module, call _Payload": only unrestricted unpickling runs that
    torch.save({"0.learning_to_hash_transformation_q.0.0.weight": _Payload()}, path)
    with pytest.raises(ValueError, match="needs pickle code execution"):
        convert_hat_checkpoint(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_bad_checkpoints_name_what_is_wrong(tmp_path: Path) -> None:
    modules, checkpoint = _checkpoint(tmp_path, 2, layers=1)
    state = modules.state_dict()
    cases = {
        "extra": ({**state, "0.learning_to_hash_transformation.0.1.weight": torch.ones(1)}, "LSH"),
        "gap": (
            {k: v for k, v in state.items() if "_q.1." not in k},
            r"heads \[0, 2, 3\] are not allowed",
        ),
        "no_k": ({k: v for k, v in state.items() if "_k." not in k}, "_k is missing"),
        "shape": (
            {**state, "0.learning_to_hash_transformation_q.2.2.weight": torch.ones(BITS, 5)},
            r"weight \(16, 5\)",
        ),
    }
    for name, (bad, message) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(ValueError, match=message):
            convert_hat_checkpoint(path, tmp_path / f"{name}.safetensors")
    out = tmp_path / "ok.safetensors"
    convert_hat_checkpoint(checkpoint, out)
    with pytest.raises(ValueError, match="it exists"):
        convert_hat_checkpoint(checkpoint, out)
    with pytest.raises(ValueError, match=r"use a \.safetensors path"):
        convert_hat_checkpoint(checkpoint, tmp_path / "x.bin")
