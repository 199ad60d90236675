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
    """Give the adapters that support it, per loaded model, one shared context store; return
    how many adapters now share one."""
    by_model: dict[int, list[Any]] = {}
    for adapter in adapters:
        if callable(getattr(adapter, "share_context_cache", None)):
            by_model.setdefault(id(getattr(adapter, "model", adapter)), []).append(adapter)
    shared = 0
    for members in by_model.values():
        if len(members) < 2:
            continue
        store = members[0].share_context_cache()
        for adapter in members[1:]:
            adapter.share_context_cache(store)
        shared += len(members)
    logger.debug("context prefill shared by %d adapter(s)", shared)
    return shared
