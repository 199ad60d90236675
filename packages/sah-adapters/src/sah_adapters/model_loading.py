"""Loading a model and tokenizer from a built-in name, a local folder or a hub id."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sah_adapters.builtin_models import BUILTIN_MODELS, converted_model_dir

logger = logging.getLogger(__name__)


def resolve_model_source(model_name: str) -> str:
    """The folder or hub id that ``from_pretrained`` should read for ``model_name``."""
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name={model_name!r} must be a non-empty str")
    if model_name in BUILTIN_MODELS:
        return str(converted_model_dir(model_name))
    return model_name


def load_model(model_name: str, model_kwargs: dict[str, Any], device: str | None) -> Any:
    """A causal LM in eval mode; float32 on the CPU unless ``model_kwargs``/``device`` say else.

    ``trust_remote_code`` stays off unless ``model_kwargs`` sets it: remote code is arbitrary
    code, and its attention would not go through the registry anyway.
    """
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = dict(model_kwargs)
    if "torch_dtype" in kwargs:  # the 4.x spelling; 5.x only knows `dtype`
        kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
    kwargs.setdefault("dtype", torch.float32)
    kwargs.setdefault("trust_remote_code", False)
    source = resolve_model_source(model_name)
    if model_name not in BUILTIN_MODELS and not Path(source).exists():
        logger.info("%s is not a local folder or built-in model; loading it from the hub", source)
    model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if device is not None and "device_map" not in kwargs:
        model = model.to(device)
    model.eval()
    return model


def load_tokenizer(model_name: str, tokenizer_kwargs: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    kwargs = dict(tokenizer_kwargs)
    kwargs.setdefault("trust_remote_code", False)
    return AutoTokenizer.from_pretrained(resolve_model_source(model_name), **kwargs)
