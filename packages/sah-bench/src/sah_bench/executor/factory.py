"""Adapter factories, named by ``"module:function"`` so worker processes can import them.

A factory is called as ``factory(model_name, sparse_config_dict_or_None)``, plus the keyword
arguments ``model_kwargs=``, ``device=`` and ``safetensors_only=`` when its signature accepts
them (the default does).
The default builds a :class:`sah_adapters.ModelAdapterHF`; ``sah_adapters`` (and with it torch
and transformers) is imported only inside the call, so planning a run or reading results never
pays for it.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any, cast

from sah_bench.executor.errors import ConfigError, ModelLoadError
from sah_protocol import ModelAdapter

DEFAULT_ADAPTER_FACTORY = "sah_bench.executor.factory:build_hf_adapter"

__all__ = [
    "DEFAULT_ADAPTER_FACTORY",
    "AdapterCache",
    "ModelLoadError",
    "build_hf_adapter",
    "call_factory",
    "resolve_factory",
]

#: The last loaded (model, kwargs, device) -> (model, tokenizer); one entry, so memory stays
#: bounded.
_LOADED: dict[str, tuple[Any, Any]] = {}


def _load_key(model_name: str, model_kwargs: dict[str, Any], device: str | None) -> str:
    return json.dumps([model_name, model_kwargs, device], sort_keys=True, default=str)


def build_hf_adapter(
    model_name: str,
    sparse_config: dict[str, Any] | None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    safetensors_only: bool = False,
) -> ModelAdapter:
    """A ``ModelAdapterHF`` for ``model_name`` on ``device``; dense when ``sparse_config`` is
    None. ``model_kwargs`` go to ``from_pretrained`` (e.g. ``{"dtype": "bfloat16"}``);
    ``safetensors_only`` refuses pickle checkpoints (they can run code when loaded).

    The loaded weights are kept for the next call with the same model, kwargs and device, so
    the cells of several sparse configs of one model load it once (the previous adapter is
    closed by :class:`AdapterCache`, which removes its attention registration from the model).
    """
    from sah_core import ResearchAttentionConfig

    try:
        config = None if sparse_config is None else ResearchAttentionConfig.from_dict(sparse_config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"sparse config is not allowed: {exc}") from exc
    from sah_adapters import ModelAdapterHF

    kwargs = dict(model_kwargs or {})
    key = _load_key(model_name, kwargs, device) + str(safetensors_only)
    if key not in _LOADED:
        _LOADED.clear()
        try:
            adapter = ModelAdapterHF(
                model_name,
                sparse_attention_config=config,
                model_kwargs=kwargs,
                device=device,
                safetensors_only=safetensors_only,
            )
        except Exception as exc:  # OSError, ValueError, safetensors / pickle errors, CUDA ...
            raise ModelLoadError(
                f"model {model_name!r} could not be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        _LOADED[key] = (adapter.model, adapter.tokenizer)
        return adapter
    model, tokenizer = _LOADED[key]
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


def _accepts(function: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def call_factory(
    factory: Callable[..., ModelAdapter],
    model: str,
    sparse_config: dict[str, Any] | None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    safetensors_only: bool = False,
) -> ModelAdapter:
    """Call ``factory`` with the keyword arguments it accepts.

    Model kwargs given to a factory that cannot take them are an error, not silently dropped;
    the placement hints (device, safetensors_only) go only where they are understood.
    """
    extra: dict[str, Any] = {}
    if model_kwargs:
        if not _accepts(factory, "model_kwargs"):
            raise ConfigError(
                f"model_kwargs {sorted(model_kwargs)} given, but the adapter factory "
                f"{getattr(factory, '__name__', factory)!r} takes no model_kwargs"
            )
        extra["model_kwargs"] = dict(model_kwargs)
    if device is not None and _accepts(factory, "device"):
        extra["device"] = device
    if safetensors_only and _accepts(factory, "safetensors_only"):
        extra["safetensors_only"] = True
    return factory(model, sparse_config, **extra)


class AdapterCache:
    """Keeps the adapter of the last (model, config, model kwargs) so consecutive cells share
    it. ``device`` is where this process places models (None: the factory's default)."""

    def __init__(
        self, factory: str | Callable[..., ModelAdapter], device: str | None = None
    ) -> None:
        self._factory = resolve_factory(factory)
        self.device = device
        self._key: str | None = None
        self._adapter: ModelAdapter | None = None

    def get(
        self,
        model: str,
        config_name: str,
        sparse_config: dict[str, Any] | None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        key = json.dumps([model, config_name, model_kwargs or {}], sort_keys=True, default=str)
        if self._key != key or self._adapter is None:
            self.close()
            self._adapter = call_factory(
                self._factory,
                model,
                sparse_config,
                model_kwargs=model_kwargs,
                device=self.device,
            )
            self._key = key
        return self._adapter

    def close(self) -> None:
        if self._adapter is not None:
            self._adapter.close()
        self._adapter, self._key = None, None
