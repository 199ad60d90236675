"""Registering an attention function with transformers' official registries.

transformers looks the attention function up by name: ``AttentionInterface`` maps
``config._attn_implementation`` to the function every attention layer calls, and
``AttentionMaskInterface`` maps the same name to the function that builds the mask it receives.
Registering both under a name of our own and switching ``model.set_attn_implementation`` is
the whole integration: no monkeypatching, no hooks.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_counter = itertools.count()
_counter_lock = threading.Lock()

#: Prefix of every name this package registers (never contains "sdpa": transformers treats
#: any name containing it as an SDPA variant and runs SDPA-specific checks/fallbacks on it).
NAME_PREFIX = "sah_research_attention"


def unique_attention_name() -> str:
    """A registry name no other adapter in this process (or another process) uses."""
    with _counter_lock:
        serial = next(_counter)
    return f"{NAME_PREFIX}_{os.getpid()}_{serial}"


def register_attention(
    name: str,
    attention_function: Callable[..., Any],
    mask_function: Callable[..., Any] | None = None,
) -> None:
    """Register ``attention_function`` and its mask builder (default: transformers' eager one,
    a materialized additive mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if "sdpa" in name:
        raise ValueError(f"attention name {name!r} must not contain 'sdpa'")
    if is_registered(name):
        raise ValueError(f"attention name {name!r} is already registered")
    AttentionInterface.register(name, attention_function)
    # The eager mask is a full additive float mask [B, 1, Q, K] that already holds causality,
    # padding and any sliding window, so the attention function never has to infer them.
    AttentionMaskInterface.register(name, mask_function or eager_mask)
    logger.debug("registered attention %s", name)


def unregister_attention(name: str) -> None:
    """Remove ``name`` from both registries (no-op if absent).

    transformers has ``register`` but no ``unregister``; the registries keep their global
    entries in the class-level ``_global_mapping`` dict, so we remove our own key there.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface._global_mapping.pop(name, None)
    AttentionMaskInterface._global_mapping.pop(name, None)
    logger.debug("unregistered attention %s", name)


def is_registered(name: str) -> bool:
    """Whether ``name`` is in either registry."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    return name in AttentionInterface._global_mapping or name in (
        AttentionMaskInterface._global_mapping
    )
