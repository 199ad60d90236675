"""`sparse-attention-benchmark --models FILE`: registry files merged for every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sah_adapters import model_registry
from sah_bench.cli import app


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_registry.MODELS_ENV_VAR, "")
    monkeypatch.setattr(model_registry, "_extra_files", [])
    monkeypatch.setattr(model_registry, "_cached", None)


def test_models_file_entries_are_listed(tmp_path: Path, clean_registry: None) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("models:\n  my-llama:\n    source: org/llama\n    description: mine\n")
    result = CliRunner().invoke(app, ["--models", str(path), "list", "models"])
    assert result.exit_code == 0, result.output
    assert "  my-llama: mine [org/llama]" in result.output
    assert "  smollm2-135m:" in result.output
    assert str(path.resolve()) in model_registry.env_files()  # workers inherit it


def test_bad_models_file_exits_2(tmp_path: Path, clean_registry: None) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[models.x]\nsource = "org/x"\nquantization = 4\n')
    result = CliRunner().invoke(app, ["--models", str(path), "list", "models"])
    assert result.exit_code == 2
    assert "models.x.quantization=4 is not allowed" in result.output
