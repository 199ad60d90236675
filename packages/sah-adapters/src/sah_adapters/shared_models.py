"""One loaded copy of a model per process, shared by the adapters built for it.

``ModelAdapterHF(model_name, ...)`` asks :data:`SHARED_MODELS` for its (model, tokenizer):
the first adapter of a given load (model name, model and tokenizer kwargs, device, dtype,
safetensors setting, adapter class) loads it, later ones get the same objects and add a
reference; :meth:`ModelAdapterHF.close` drops one. When the last adapter closes, the store
lets go of the model, so it is freed once no other object holds it. Each adapter keeps its
own attention registration and masker stack, so sparse configs of one model can sit side by
side without a second copy of the weights.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


def load_key(*parts: Any) -> str:
    """A stable key for the arguments of one load (dicts by sorted keys; others by ``str``)."""
    return json.dumps(parts, sort_keys=True, default=repr)


@dataclass
class _Slot:
    model: Any
    tokenizer: Any
    references: int


class SharedModels:
    """Reference-counted (model, tokenizer) pairs by load key; thread-safe."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def acquire(self, key: str, load: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
        """The pair for ``key``, loading it with ``load()`` the first time; one more reference."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                slot.references += 1
                return slot.model, slot.tokenizer
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per key, even when two threads ask at once
            with self._lock:
                slot = self._slots.get(key)
                if slot is not None:
                    slot.references += 1
                    return slot.model, slot.tokenizer
            model, tokenizer = load()
            with self._lock:
                self._slots[key] = _Slot(model, tokenizer, 1)
                self._loading.pop(key, None)
            return model, tokenizer

    def release(self, key: str) -> bool:
        """Drop one reference; True when it was the last (the store no longer holds it)."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                return False
            slot.references -= 1
            if slot.references > 0:
                return False
            del self._slots[key]
        logger.info("released the last reference to a shared model")
        return True

    def references(self, key: str) -> int:
        """How many open adapters hold the pair of ``key`` (0 = not loaded)."""
        with self._lock:
            slot = self._slots.get(key)
            return 0 if slot is None else slot.references

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)


#: The process-wide store used by ``ModelAdapterHF``.
SHARED_MODELS = SharedModels()
