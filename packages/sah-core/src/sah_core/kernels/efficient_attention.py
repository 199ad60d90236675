"""Efficient attention: a selector bound straight to the sparse decode kernel.

The research path (maskers + ``ResearchAttention``) composes ``Mask`` values for fidelity
studies. The efficient path is the deployment shape of one fixed recipe: a selector turns the
queries and its own state (e.g. page summaries) into index lists ``[B, H, Q, L]`` directly,
and the sparse decode kernel attends over them, so no ``[B, H, Q, K]`` tensor is ever built.
This is what the original project called ``EfficientAttention``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from sah_core.kernels.dispatch import KernelBackend, sparse_decode_attention


class EfficientAttention(ABC):
    """Base class: subclasses supply :meth:`select_indices`; the kernel call is shared.

    ``state`` is a plain dict owned by one request and one layer (e.g.
    ``sparse_meta_data[layer_idx]``); a selector keeps its incremental summaries there.
    """

    def __init__(self, backend: KernelBackend = "auto") -> None:
        self.backend: KernelBackend = backend

    @abstractmethod
    def select_indices(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        state: dict[str, Any],
        key_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return index-form ``(indices, weights)`` for ``queries`` over ``keys``;
        ``key_valid`` (bool ``[B, K]``, None = all) marks padded keys False: they are neither
        summarised nor selected.

        ``indices`` int64 ``[B, Hq or Hkv, Q, L]`` padded with -1, ``weights`` the matching
        keep-probabilities (1 for selected entries of deterministic selectors, 0 at padding).
        """

    def attend(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        sinks: torch.Tensor | None = None,
        state: dict[str, Any] | None = None,
        key_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Select, then run sparse decode attention: ``[B, Hq, Q, D]`` in the query dtype
        (``key_valid`` bool ``[B, K]``: padded keys False, never attended)."""
        indices, weights = self.select_indices(
            queries, keys, {} if state is None else state, key_valid
        )
        return sparse_decode_attention(
            queries, keys, values, indices, weights, scaling, sinks, backend=self.backend
        )
