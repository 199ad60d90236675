"""Structural protocols for masker configs and maskers.

Kept torch-free: tensors are typed as ``Any`` here; ``sah_core`` gives the concrete types.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class MaskerConfigProtocol(Protocol):
    """A masker's configuration: a dataclass that serialises to a JSON-safe dict."""

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class MaskerProtocol(Protocol):
    """Adds the keys it selects to a previous mask and returns a **new** mask.

    ``add_mask(keys, queries, values, attention_mask, scaling, dropout, sparse_meta_data,
    previous_mask, **kwargs)``: keys/values ``[B, Hkv, K, D]``, queries ``[B, Hq, Q, D]``,
    the previous mask has logical shape ``[B, Hq, Q, K]``. State kept between calls lives in
    ``sparse_meta_data`` keyed by layer (``kwargs["layer_idx"]``).
    """

    config: Any

    def add_mask(
        self,
        keys: Any,
        queries: Any,
        values: Any,
        attention_mask: Any,
        scaling: float,
        dropout: float,
        sparse_meta_data: dict[Any, Any],
        previous_mask: Any,
        **kwargs: Any,
    ) -> Any: ...

    @classmethod
    def create_from_config(cls, config: Any) -> MaskerProtocol: ...


@runtime_checkable
class SamplingMaskerProtocol(MaskerProtocol, Protocol):
    """A masker whose weights are keep-probabilities (< 1); at most one per stack."""

    is_sampling: ClassVar[bool]
