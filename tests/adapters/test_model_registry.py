"""Model registry files: shipped entries, merge order, field checks, loading through an entry."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from sah_adapters import model_registry
from sah_adapters.model_registry import ModelRegistry, read_registry_file


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(model_registry.MODELS_ENV_VAR, raising=False)
    monkeypatch.setattr(model_registry, "_extra_files", [])
    monkeypatch.setattr(model_registry, "_cached", None)


def test_shipped_entries_are_the_builtin_models(clean_registry: None) -> None:
    registry = ModelRegistry.load()
    assert registry.names() == ["gemma3-270m", "smollm2-135m"]
    entry = registry.get("smollm2-135m")
    assert entry is not None and entry.builtin == "smollm2-135m" and entry.dtype == "float32"


def test_merge_order_later_entries_replace_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    first = _write(
        tmp_path / "a.toml",
        '[models.m]\nsource = "org/one"\ndtype = "bfloat16"\n'
        '[models.m.model_kwargs]\nattn_implementation = "eager"\n'
        '[models.only-a]\nsource = "org/a"\n',
    )
    second = _write(tmp_path / "b.yaml", "models:\n  m:\n    source: org/two\n")
    third = _write(
        tmp_path / "c.toml", '[models.smollm2-135m]\nsource = "org/mine"\n[models.c]\nsource="x"\n'
    )
    monkeypatch.setenv(model_registry.MODELS_ENV_VAR, os.pathsep.join([str(first), str(second)]))
    registry = ModelRegistry.load([third])
    m = registry.get("m")
    assert m is not None and m.source == "org/two"
    assert m.dtype is None and dict(m.model_kwargs) == {}  # replaced as a whole, not merged
    assert m.origin == str(second)
    assert set(registry.names()) == {"m", "only-a", "c", "smollm2-135m", "gemma3-270m"}
    mine = registry.get("smollm2-135m")
    assert mine is not None and mine.source == "org/mine" and mine.builtin is None
    # add_model_files: merged after SAH_MODELS and exported for worker processes
    model_registry.add_model_files([tmp_path / "c.toml"])
    assert str((tmp_path / "c.toml").resolve()) in os.environ[model_registry.MODELS_ENV_VAR]
    assert model_registry.lookup("c") is not None and model_registry.lookup("nope") is None


BAD = [
    ('[models.m]\nsource = "x"\ncolour = "red"\n', ["models.m.colour", "'red'", "source"]),
    ("[models.m]\ndtype = 'float32'\n", ["models.m.source", "None", "hub id"]),
    ('[models.m]\nsource = "x"\ndtype = "int8"\n', ["models.m.dtype", "'int8'", "bfloat16"]),
    ('[models.m]\nsource = "builtin:nope"\n', ["models.m.source", "builtin:nope", "smollm2"]),
    (
        '[models.m]\nsource = "x"\n[models.m.model_kwargs]\ntorch_dtype = "float16"\n',
        ["models.m.model_kwargs.torch_dtype", "'float16'", "use dtype"],
    ),
    (
        '[models.m]\nsource = "x"\nuse_chat_template = "yes"\n',
        ["models.m.use_chat_template", "'yes'", "true or false"],
    ),
    (
        '[models.m]\nsource = "x"\n[models.m.quantization]\nmethod = "int3"\n',
        ["models.m.quantization.method", "'int3'", "bitsandbytes", "fp8"],
    ),
    (
        '[models.m]\nsource = "x"\n[models.m.quantization]\nmethod = "bitsandbytes"\nbits = 4\n',
        ["models.m.quantization.bits", "4", "load_in_4bit"],
    ),
    (
        '[models.m]\nsource = "x"\n[models.m.quantization]\nmethod = "bitsandbytes"\n'
        'load_in_4bit = "yes"\n',
        ["models.m.quantization", "'yes'", "BitsAndBytesConfig says", "boolean"],
    ),
    ('[models."bad name"]\nsource = "x"\n', ["'bad name'", "letters, digits"]),
    ('[model.m]\nsource = "x"\n', ["['model']", "only top-level key is 'models'"]),
    ('[models.m\nsource = "x"\n', ["cannot be parsed"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_entries_name_field_value_and_allowed(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ValueError) as error:
        read_registry_file(path)
    message = str(error.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_quantization_configs_are_transformers_objects(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.toml",
        '[models.q4]\nsource = "x"\n[models.q4.quantization]\nmethod = "bitsandbytes"\n'
        'load_in_4bit = true\nbnb_4bit_quant_type = "nf4"\nbnb_4bit_compute_dtype = "bfloat16"\n'
        '[models.f8]\nsource = "y"\n[models.f8.quantization]\nmethod = "fp8"\n'
        "weight_block_size = [64, 64]\n",
    )
    from transformers import BitsAndBytesConfig, FineGrainedFP8Config

    entries = read_registry_file(path)
    try:
        q4 = entries["q4"].quantization_config()
    except ValueError as error:
        # transformers 4.x checks for the bitsandbytes package when the config is built
        assert importlib.util.find_spec("bitsandbytes") is None
        assert "needs the package 'bitsandbytes'" in str(error) and "models.q4" in str(error)
    else:
        assert isinstance(q4, BitsAndBytesConfig) and q4.load_in_4bit
        assert q4.bnb_4bit_compute_dtype == torch.bfloat16 and q4.bnb_4bit_quant_type == "nf4"
    f8 = entries["f8"].quantization_config()
    assert isinstance(f8, FineGrainedFP8Config) and tuple(f8.weight_block_size) == (64, 64)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adapter_testkit import build_tokenizer, tiny_model

    folder = tmp_path_factory.mktemp("reg") / "tiny"
    tiny_model("llama").save_pretrained(folder)
    build_tokenizer(chat_template=True).save_pretrained(folder)
    return folder


def test_adapter_loads_through_an_entry(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: Any
) -> None:
    from sah_adapters import ModelAdapterHF

    relative = os.path.relpath(tiny_dir, tmp_path)
    registry_file = _write(
        tmp_path / "models.toml",
        f'[models.tiny-bf16]\nsource = "./{relative}"\ndtype = "bfloat16"\n'
        'model_class = "LlamaForCausalLM"\nuse_chat_template = false\n'
        '[models.tiny-bf16.model_kwargs]\nattn_implementation = "eager"\n',
    )
    monkeypatch.setenv(model_registry.MODELS_ENV_VAR, str(registry_file))
    with ModelAdapterHF("tiny-bf16") as adapter:
        assert type(adapter.model).__name__ == "LlamaForCausalLM"
        assert adapter.model.dtype == torch.bfloat16  # the entry's dtype
        assert adapter.model.config._attn_implementation == "eager"
        assert adapter.tokenizer.chat_template is None  # use_chat_template = false
    with ModelAdapterHF("tiny-bf16", dtype="float32") as adapter:
        assert adapter.model.dtype == torch.float32  # the caller's dtype wins
