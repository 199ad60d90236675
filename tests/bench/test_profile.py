"""`sparse-attention-benchmark profile`: tables from the profiler's ranges, trace, CLI errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from sah_bench.cli import app
from sah_bench.profile import count_ops, profile_decode, rows_from_events
from sah_core import ResearchAttentionConfig
from sah_core.attention.backends import run_attention
from sah_core.maskers.local import LocalMaskerConfig
from sah_core.maskers.oracle_top_k import OracleTopKConfig
from sah_core.maskers.sink import SinkMaskerConfig

CONFIG = ResearchAttentionConfig(
    masker_configs=[
        SinkMaskerConfig(sink_size=2),
        LocalMaskerConfig(window_size=4),
        OracleTopKConfig(heavy_size=4),
    ]
)


@dataclass
class _Range:
    start: float
    end: float

    def elapsed_us(self) -> float:
        return self.end - self.start


@dataclass
class _Event:
    name: str
    start: float
    end: float
    cpu_children: list[_Event] = field(default_factory=list)
    time_range: _Range = field(init=False)

    def __post_init__(self) -> None:
        self.time_range = _Range(self.start, self.end)


def test_op_count_and_shares_from_a_hand_built_tree() -> None:
    # call [0, 100]: plan [0, 10] (1 op), masker [10, 40] (matmul calling mm = 1 top-level op,
    # plus a bare add), attention [40, 90] holding the backend marker and 2 ops; 1 op outside.
    mm = _Event("aten::mm", 12, 20)
    masker = _Event(
        "sah.masker[0]:sink",
        10,
        40,
        [_Event("aten::matmul", 11, 21, [mm]), _Event("aten::add", 22, 24)],
    )
    attention = _Event(
        "sah.attention",
        40,
        90,
        [
            _Event("aten::bmm", 41, 60),
            _Event("sah.backend:x/y", 61, 61),
            _Event("aten::mul", 62, 70),
        ],
    )
    call = _Event(
        "sah.call[layer=3]",
        0,
        100,
        [
            _Event("sah.plan", 0, 10, [_Event("aten::view", 1, 2)]),
            masker,
            attention,
            _Event("aten::transpose", 91, 92),
        ],
    )
    assert count_ops(call) == 1 + 2 + 2 + 1
    rows = {r["part"]: r for r in rows_from_events([call, mm], with_device=False)}
    assert set(rows) == {"call", "plan", "masker[0]:sink", "attention:x/y", "other"}
    assert rows["masker[0]:sink"]["ops_per_call"] == 2
    assert rows["attention:x/y"]["cpu_share"] == pytest.approx(0.5)
    assert rows["other"]["cpu_us_per_call"] == pytest.approx(100 - 10 - 30 - 50)
    assert rows["other"]["ops_per_call"] == 1
    assert all(r["layer"] == 3 for r in rows.values())


@pytest.fixture(scope="module")
def decode_result() -> Any:
    return profile_decode(
        CONFIG, 24, heads=4, kv_heads=2, head_dim=8, layers=2, steps=3, warmup=1, seed=1
    )


def test_decode_table_has_each_part_per_layer(decode_result: Any) -> None:
    table = decode_result.table
    assert sorted(table["layer"].unique()) == [0, 1]
    # which backend ran, asked independently of the profiler
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 1, 8, generator=gen), torch.randn(1, 2, 24, 8, generator=gen)
    from sah_core import ResearchAttention

    attention = ResearchAttention.create_from_config(CONFIG)
    call = attention.plan(q, k, k.clone(), None, 8**-0.5, 0.0, {}, 0)
    _, backend = run_attention(call, attention.mask_for(call), "auto")
    for layer in (0, 1):
        parts = table[table["layer"] == layer].set_index("part")
        assert list(parts.index) == [
            "call",
            "plan",
            "masker[0]:sink",
            "masker[1]:local",
            "masker[2]:oracle_top_k",
            f"attention:{backend}",
            "other",
        ]
        assert (parts["calls"] == 3).all()  # one call per profiled step
        assert parts.loc["call", "cpu_share"] == 1.0
        inner = parts.drop(index="call")
        assert inner["cpu_share"].between(0, 1).all()
        assert inner["cpu_ms"].sum() == pytest.approx(parts.loc["call", "cpu_ms"], rel=1e-6)
        assert parts.loc["masker[2]:oracle_top_k", "ops_per_call"] > 0
        assert parts.loc[f"attention:{backend}", "ops_per_call"] > 0
    summary = decode_result.summary.set_index("part")
    assert summary.loc["call", "calls"] == 6


def test_written_trace_holds_the_ranges(decode_result: Any, tmp_path: Path) -> None:
    paths = decode_result.write(tmp_path / "out")
    trace = json.loads(paths["trace"].read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"sah.call[layer=0]", "sah.call[layer=1]", "sah.masker[2]:oracle_top_k"} <= names
    assert paths["table_csv"].read_text().startswith("layer,part,calls,")
    assert "| masker[0]:sink |" in paths["summary_md"].read_text()


def test_decode_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="heads=6 / kv_heads=4"):
        profile_decode(CONFIG, 16, heads=6, kv_heads=4)
    with pytest.raises(ValueError, match="warmup=4 is not allowed with keys=4"):
        profile_decode(CONFIG, 4, warmup=4)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adapter_testkit import build_tokenizer, tiny_model

    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    tiny_model("llama").save_pretrained(folder)
    build_tokenizer(chat_template=False).save_pretrained(folder)
    return folder


def test_cli_profiles_a_request(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "sparse.json"
    config.write_text(json.dumps(CONFIG.to_dict()))
    out = tmp_path / "prof"
    args = ["profile", "-m", str(tiny_model_dir), "-c", str(config), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--context-tokens", "40", "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert "| masker[2]:oracle_top_k |" in result.output
    assert (out / "trace.json").is_file() and (out / "profile.csv").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "x", "--decode-keys", "8"], "exactly one of --model"),
        ([], "exactly one of --model"),
        (["--decode-keys", "8", "--format", "html"], "--format 'html' is not allowed"),
        (["--decode-keys", "8", "--device", "tpu"], "--device 'tpu' is not allowed"),
    ],
)
def test_cli_bad_input_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["profile", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_dense_request_is_refused(tiny_model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["profile", "-m", str(tiny_model_dir), "-c", "dense"])
    assert result.exit_code == 2
    assert "is dense" in result.output
