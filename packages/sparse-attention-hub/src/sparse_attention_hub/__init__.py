"""Sparse Attention Hub: the one-import public API.

``from sparse_attention_hub import ModelAdapterHF, Request, RequestResponse,
ResearchAttentionConfig, ...``. Heavy packages (torch, transformers) load only when a name
that needs them is first used, so ``import sparse_attention_hub`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Names of the old API and what replaces them.
REMOVED_NAMES: dict[str, str] = {
    "SparseAttentionHF": "use ModelAdapterHF (sparse_attention_hub.ModelAdapterHF) instead",
    "SparseAttentionGen": "use ModelAdapterHF.process_request(Request(...)) instead",
    "ModelHub": "use ModelAdapterHF (it loads models itself) instead",
    "ModelHubHF": "use ModelAdapterHF (it loads models itself) instead",
    "Pipeline": "removed; no replacement (use ModelAdapterHF.process_request)",
    "PipelineHF": "removed; no replacement (use ModelAdapterHF.process_request)",
    "SparseAttentionServer": "removed; no replacement",
}

# Modules searched, in order, for a public name that is not defined here.
_PROVIDERS = ("sah_protocol", "sah_core", "sah_core.maskers", "sah_adapters", "sah_bench")


def _public_names() -> list[str]:
    names = set(_OWN_NAMES)
    for module_name in _PROVIDERS:
        names.update(getattr(importlib.import_module(module_name), "__all__", ()))
    return sorted(names)


def __getattr__(name: str) -> Any:
    if name == "__all__":
        # Computed on first use (``from sparse_attention_hub import *``): it needs the heavy
        # packages imported, which a plain ``import sparse_attention_hub`` must not do.
        return _public_names()
    if name in REMOVED_NAMES:
        raise ImportError(
            f"sparse_attention_hub.{name} was removed from the API: {REMOVED_NAMES[name]}. "
            "See docs/migration.md."
        )
    if name.startswith("_"):
        raise AttributeError(name)
    for module_name in _PROVIDERS:
        module = importlib.import_module(module_name)
        if name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            globals()[name] = value  # cache: later lookups skip the search
            return value
    raise AttributeError(f"module 'sparse_attention_hub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_public_names()))


_OWN_NAMES = ["REMOVED_NAMES"]
