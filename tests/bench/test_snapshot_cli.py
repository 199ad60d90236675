"""End to end: the CLI runs benchmarks offline from a folder of hub snapshots (``--data-dir``)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import snapshot_fixtures as fx
from typer.testing import CliRunner

from sah_bench.cli import FACTORY_ENV_VAR, app


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets.config

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_cli_runs_every_family_from_a_snapshot_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_factory: str
) -> None:
    monkeypatch.setenv(FACTORY_ENV_VAR, fake_factory)
    root = tmp_path / "snapshots"
    written = fx.build_snapshots(root)
    out = tmp_path / "out"
    cells = {
        "longbench_hotpotqa": ("Xnhyacinth/LongBench", "hotpotqa", "test", None),
        "longbench_qasper_e": ("Xnhyacinth/LongBench", "qasper_e", "test", None),
        "ruler_vt": ("simonjegou/ruler", "4096", "test", "vt"),
        "infinitebench_passkey": ("MaxJeblick/InfiniteBench", "passkey", "test", None),
        "loogle_shortdep_cloze": ("simonjegou/loogle", "shortdep_cloze", "test", None),
        "zeroscrolls_quality": ("simonjegou/zero_scrolls", "default", "test", "quality"),
        "aime2025_aime2025": ("xAlg-AI/att-hub-aime2025", "aime2025", "test", None),
    }
    args = ["run", "-m", "fake-constant", "-c", "dense", "-o", str(out)]
    for spec in (
        "longbench:hotpotqa,qasper_e",
        "ruler:vt",
        "infinitebench:passkey",
        "loogle:shortdep_cloze",
        "zeroscrolls:quality",
        "aime2025",
        "mock",  # ignores --data-dir
    ):
        args += ["-b", spec]
    args += ["--data-dir", str(root), "--backend", "inline", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{len(cells) + 1} cells: {len(cells) + 1} done" in result.output
    for cell, (repo, config, split, task) in cells.items():
        source = written[(repo, config, split)]
        if task is not None:
            source = [r for r in source if r["task"] == task]
        source = [r for r in source if r.get("answer", r.get("answers")) or task == "quality"]
        cell_dir = out / "fake-constant" / "dense" / cell
        frame = pd.read_parquet(cell_dir / "raw_results.parquet")
        # Every question of the snapshot was asked, with its text unchanged.
        assert sorted(frame["question"]) == sorted(r["question"] for r in source), cell
        metrics = json.loads((cell_dir / "metrics.json").read_text())
        assert metrics["n_questions"] == len(source)
        if cell == "longbench_qasper_e":  # the LongBench-E buckets reach the reported metrics
            assert set(metrics["official"]) == {"score", "0-4k", "4-8k", "8k+"}


def test_cli_missing_snapshot_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_factory: str
) -> None:
    monkeypatch.setenv(FACTORY_ENV_VAR, fake_factory)
    root = tmp_path / "snapshots"
    root.mkdir()
    out = tmp_path / "out"
    args = ["run", "-m", "fake-constant", "-c", "dense", "-b", "ruler:vt", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--data-dir", str(root), "--no-progress"])
    assert result.exit_code == 2, result.output  # bad input, not a run failure
    error = json.loads((out / "fake-constant/dense/ruler_vt/error.json").read_text())
    assert error["category"] == "data"
    assert str(root / "simonjegou" / "ruler") in error["error"]
