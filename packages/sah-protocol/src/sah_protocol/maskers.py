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

    ``add_mask(call, previous)``: ``call`` is the layer call's plan (``sah_core.CallPlan``:
    queries ``[B, Hq, Q, D]``, keys/values ``[B, Hkv, K, D]``, normalised mask, layer index,
    positions, chunk plan, padding description, and ``call.state``, the masker's own state
    slot keyed by layer and stack position); ``previous`` has logical shape ``[B, Hq, Q, K]``.
    """

    config: Any

    def add_mask(self, call: Any, previous: Any) -> Any: ...

    @classmethod
    def create_from_config(cls, config: Any) -> MaskerProtocol: ...


@runtime_checkable
class SamplingMaskerProtocol(MaskerProtocol, Protocol):
    """A masker whose weights are keep-probabilities (< 1); at most one per stack."""

    is_sampling: ClassVar[bool]
