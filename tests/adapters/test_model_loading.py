"""Model placement (device, dtype) and typed load errors, on a tiny model saved to disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from adapter_testkit import tiny_model

from sah_adapters import (
    CorruptCheckpointError,
    ModelAdapterHF,
    ModelLoadError,
    ModelPathNotFoundError,
    Placement,
    UnsafeCheckpointError,
    load_model,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, chat_tokenizer: Any) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(folder)
    chat_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved_pickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama-pickle")
    model = tiny_model("llama")
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("bfloat16", torch.bfloat16), ("float16", torch.float16), (None, torch.float32)],
)
def test_dtype_reaches_the_weights(saved: Path, dtype: Any, expected: torch.dtype) -> None:
    with ModelAdapterHF(str(saved), device="cpu", dtype=dtype) as adapter:
        assert {p.dtype for p in adapter.model.parameters()} == {expected}
        assert {p.device.type for p in adapter.model.parameters()} == {"cpu"}


def test_dtype_and_device_through_model_kwargs(saved: Path) -> None:
    with ModelAdapterHF(str(saved), model_kwargs={"torch_dtype": "bf16", "device": "auto"}) as a:
        assert next(a.model.parameters()).dtype == torch.bfloat16
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert next(a.model.parameters()).device.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_fails_before_loading(device: str) -> None:
    # The model path does not exist: the device check must come first.
    with pytest.raises(ValueError, match="CUDA is not available"):
        ModelAdapterHF("/nonexistent/model", device=device)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "gpu7"}, r"device='gpu7' is not allowed; use one of \['cpu', 'cuda'"),
        ({"device": 3}, "device=3 must be a str or torch.device"),
        ({"dtype": "float8"}, r"dtype='float8' is not allowed; use one of \['bfloat16'"),
        ({"dtype": torch.int8}, "is not a float dtype"),
        (
            {"device": "cpu", "model_kwargs": {"device_map": "auto"}},
            "give either device='cpu' or model_kwargs",
        ),
        ({"dtype": "float32", "model_kwargs": {"dtype": "bfloat16"}}, "dtype given twice"),
        ({"safetensors_only": "yes"}, "safetensors_only='yes' must be a bool"),
    ],
)
def test_bad_placement_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelAdapterHF("/nonexistent/model", **kwargs)


def test_placement_keys_leave_model_kwargs() -> None:
    kwargs: dict[str, Any] = {"dtype": "float16", "device": "cpu", "attn_implementation": "x"}
    placement = Placement.resolve(model_kwargs=kwargs)
    assert kwargs == {"attn_implementation": "x"}
    assert placement.from_pretrained_kwargs() == {"dtype": torch.float16}


@pytest.mark.parametrize("path", ["/no/such/model", "./missing-model", "a/b/c", "~/nothing here"])
def test_missing_local_path_is_reported_as_a_path(path: str) -> None:
    with pytest.raises(ModelPathNotFoundError, match="no such local folder") as info:
        load_model(path, {})
    assert info.value.path == path and isinstance(info.value, ModelLoadError)


def test_safetensors_only_refuses_a_pickle_checkpoint(saved_pickle: Path) -> None:
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin") as info:
        load_model(str(saved_pickle), {}, safetensors_only=True)
    assert info.value.path == str(saved_pickle) and "arbitrary code" in info.value.reason
    # Without the switch the same folder loads (the error above is the switch, not the file).
    model = load_model(str(saved_pickle), {"weights_only": True}, safetensors_only=False)
    assert next(model.parameters()).dtype == torch.float32


def _copy_with(saved: Path, target: Path, weights: bytes) -> Path:
    target.mkdir()
    for name in ("config.json", "generation_config.json"):
        if (saved / name).exists():
            (target / name).write_bytes((saved / name).read_bytes())
    (target / "model.safetensors").write_bytes(weights)
    return target


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b + b"\0" * 16, "truncated or padded"),
        (lambda b: b[:4], "shorter than the 8-byte header"),
        (lambda b: (10**9).to_bytes(8, "little") + b[8:], "runs past the end"),
        (lambda b: b[:8] + b"{" * 8 + b[16:], "unreadable safetensors header"),
    ],
)
def test_corrupt_safetensors_is_a_typed_error(
    saved: Path, tmp_path: Path, damage: Any, reason: str
) -> None:
    weights = (saved / "model.safetensors").read_bytes()
    folder = _copy_with(saved, tmp_path / "broken", damage(weights))
    with pytest.raises(CorruptCheckpointError, match=reason) as info:
        load_model(str(folder), {}, safetensors_only=True)
    assert info.value.path.endswith("model.safetensors")


def test_trust_remote_code_warns_with_the_code_it_runs(
    saved: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy_with(saved, tmp_path / "remote", (saved / "model.safetensors").read_bytes())
    (folder / "modeling_custom.py").write_text("# would run on load\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    from sah_adapters.model_loading import warn_remote_code

    with caplog.at_level(logging.WARNING, logger="sah_adapters.model_loading"):
        warn_remote_code(str(folder))
    text = caplog.text
    assert "trust_remote_code=True" in text and "modeling_custom.py" in text
    assert "modeling_custom.CustomModel" in text
    caplog.clear()
    # A real load with the flag (no remote code in this folder) warns too, then loads.
    with caplog.at_level(logging.WARNING, logger="sah_adapters.model_loading"):
        load_model(str(saved), {"trust_remote_code": True})
    assert "trust_remote_code=True" in caplog.text
