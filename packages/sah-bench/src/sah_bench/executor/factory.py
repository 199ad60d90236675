"""Adapter factories, named by ``"module:function"`` so worker processes can import them.

The default builds a :class:`sah_adapters.ModelAdapterHF`; ``sah_adapters`` (and with it torch
and transformers) is imported only inside the call, so planning a run or reading results never
pays for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from sah_protocol import ModelAdapter

DEFAULT_ADAPTER_FACTORY = "sah_bench.executor.factory:build_hf_adapter"


class ModelLoadError(ValueError):
    """The adapter factory could not build an adapter for a model."""


#: The last loaded (model name -> (model, tokenizer)); one entry, so memory stays bounded.
_LOADED: dict[str, tuple[Any, Any]] = {}


def build_hf_adapter(model_name: str, sparse_config: dict[str, Any] | None) -> ModelAdapter:
    """A ``ModelAdapterHF`` for ``model_name``; dense when ``sparse_config`` is None.

    The loaded weights are kept for the next call with the same model, so the cells of several
    sparse configs of one model load it once (the previous adapter is closed first by
    :class:`AdapterCache`, which removes its attention registration from the model).
    """
    from sah_adapters import ModelAdapterHF
    from sah_core import ResearchAttentionConfig

    config = None if sparse_config is None else ResearchAttentionConfig.from_dict(sparse_config)
    if model_name not in _LOADED:
        _LOADED.clear()
        try:
            adapter = ModelAdapterHF(model_name, sparse_attention_config=config)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model {model_name!r} could not be loaded: {exc}") from exc
        _LOADED[model_name] = (adapter.model, adapter.tokenizer)
        return adapter
    model, tokenizer = _LOADED[model_name]
    return ModelAdapterHF.from_model(
        model, tokenizer, sparse_attention_config=config, model_name=model_name
    )


def resolve_factory(factory: str | Callable[..., ModelAdapter]) -> Callable[..., ModelAdapter]:
    """Turn ``"module:function"`` into the function (callables pass through)."""
    if callable(factory):
        return factory
    module_name, sep, attr = str(factory).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"adapter factory {factory!r} must look like 'package.module:function'")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"adapter factory {factory!r} cannot be imported: {exc}") from None
    if not callable(found):
        raise ValueError(f"adapter factory {factory!r} is not callable")
    return cast("Callable[..., ModelAdapter]", found)


class AdapterCache:
    """Keeps the adapter of the last (model, config) so consecutive cells share it."""

    def __init__(self, factory: str | Callable[..., ModelAdapter]) -> None:
        self._factory = resolve_factory(factory)
        self._key: tuple[str, str] | None = None
        self._adapter: ModelAdapter | None = None

    def get(self, model: str, config_name: str, sparse_config: dict[str, Any] | None) -> Any:
        key = (model, config_name)
        if self._key != key or self._adapter is None:
            self.close()
            self._adapter = self._factory(model, sparse_config)
            self._key = key
        return self._adapter

    def close(self) -> None:
        if self._adapter is not None:
            self._adapter.close()
        self._adapter, self._key = None, None
