"""The few places where transformers 4.57 and 5.x differ for the adapter.

5.x renamed the forward argument ``past_key_values`` to ``cache``; both series accept
``DynamicCache(config=...)`` and ``model.set_attn_implementation(name)``.
"""

from __future__ import annotations

import inspect
from typing import Any


def cache_argument_name(model: Any) -> str:
    """The keyword under which ``model.forward`` takes its KV cache."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise ValueError(
        f"{type(model).__name__}.forward takes neither `cache` nor `past_key_values`; "
        "ModelAdapterHF needs a decoder that accepts a KV cache"
    )


def new_dynamic_cache(config: Any) -> Any:
    """An empty ``DynamicCache`` laid out for ``config`` (sliding-window layers included)."""
    from transformers import DynamicCache

    return DynamicCache(config=config)


def attention_implementation(model: Any) -> str:
    """The attention implementation the model currently dispatches to."""
    return str(model.config._attn_implementation)


def lazy_initialize(layer: Any, key_states: Any, value_states: Any) -> None:
    """``layer.lazy_initialization`` of a cache layer: 5.x takes the keys and values, 4.57
    only the keys (dtype and device come from them either way)."""
    parameters = inspect.signature(layer.lazy_initialization).parameters
    if len(parameters) >= 2:
        layer.lazy_initialization(key_states, value_states)
    else:
        layer.lazy_initialization(key_states)
