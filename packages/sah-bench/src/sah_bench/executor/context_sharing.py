"""Sharing one context's dense prefill across the sparse configs of one model.

Adapters over one loaded model that offer a shared context store get one store between them;
then a request answered through config A and next through config B pays for the context prefill
once (configs whose stack acts in the prefill phase still prefill on their own; the adapter
decides). Adapters without such a store (other factories, fakes) are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


def share_context(adapters: Sequence[Any]) -> int:
    """Give the adapters that support it (a ``context_cache`` attribute, as
    ``sah_adapters.ModelAdapterHF`` has), per loaded model, one shared
    ``sah_adapters.ContextCacheStore``; return how many adapters now share a store."""
    by_model: dict[int, list[Any]] = {}
    for adapter in adapters:
        if hasattr(adapter, "context_cache") and hasattr(adapter, "model"):
            by_model.setdefault(id(adapter.model), []).append(adapter)
    shared = 0
    for members in by_model.values():
        if len(members) < 2:
            continue
        from sah_adapters import ContextCacheStore  # only reached with sah_adapters' adapters

        store = ContextCacheStore()
        for adapter in members:
            adapter.context_cache = store
        shared += len(members)
    logger.debug("context prefill shared by %d adapter(s)", shared)
    return shared
