"""`sparse-attention-benchmark convert-hat`: writes weights + a config that builds the masker."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from typer.testing import CliRunner

from sah_bench.cli import app
from sah_core import ResearchAttention, ResearchAttentionConfig


class _Payload:
    """Stands for any object whose unpickling runs code."""


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    layer = nn.Module()
    for side in ("q", "k"):
        mlps = nn.ModuleList(
            [nn.Sequential(nn.Linear(8, 6), nn.SiLU(), nn.Linear(6, 4)) for _ in range(2)]
        )
        layer.add_module(f"learning_to_hash_transformation_{side}", mlps)
    return dict(nn.ModuleList([layer]).state_dict())


def test_converts_and_writes_a_usable_config(tmp_path: Path) -> None:
    checkpoint, weights = tmp_path / "usa.pt", tmp_path / "hat.safetensors"
    torch.save(_state_dict(), checkpoint)
    config_path = tmp_path / "hat.json"
    args = ["convert-hat", str(checkpoint), str(weights), "--config-out", str(config_path)]
    result = CliRunner().invoke(app, [*args, "--heavy-size", "3"])
    assert result.exit_code == 0, result.output
    assert "1 layers, 2 query / 2 key heads, head dim 8, 4 bits, 2 linear layers" in result.output
    config = ResearchAttentionConfig.from_dict(json.loads(config_path.read_text()))
    attention = ResearchAttention.create_from_config(config)
    q, k = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 10, 8)
    out, _ = attention.custom_attention(None, q, k, k, None, 0.3, layer_idx=0)
    assert out.shape == (1, 1, 2, 8)


def test_pickle_code_exits_2(tmp_path: Path) -> None:
    checkpoint = tmp_path / "bad.pt"
    torch.save({"x": _Payload()}, checkpoint)
    result = CliRunner().invoke(
        app, ["convert-hat", str(checkpoint), str(tmp_path / "o.safetensors")]
    )
    assert result.exit_code == 2
    assert "needs pickle code execution" in result.output
