"""Abstract interfaces that a model adapter implements.

``sah_bench`` only ever talks to a model through :class:`ModelAdapter`, so any backend (HF,
a server, a fake in tests) can be benchmarked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sah_protocol.request import Request, RequestResponse


class ModelHubAdapterInterface(ABC):
    """Creates the model and tokenizer an adapter runs."""

    @abstractmethod
    def create_model(self, model_name: str, model_kwargs: dict[str, Any]) -> Any:
        """Load ``model_name`` (hub id, local folder or built-in name) and return the model."""

    @abstractmethod
    def create_tokenizer(self, model_name: str, tokenizer_kwargs: dict[str, Any]) -> Any:
        """Load and return the tokenizer matching ``model_name``."""


class SparseAttentionAdapterInterface(ABC):
    """Switches a model between dense and sparse attention."""

    @abstractmethod
    def get_custom_attention_function(self) -> Callable[..., Any]:
        """The attention function registered with the model framework."""

    @abstractmethod
    def enable_sparse_mode(self) -> AbstractContextManager[None]:
        """Context manager: run the model with sparse attention, restore on exit."""

    @abstractmethod
    def enable_dense_mode(self) -> AbstractContextManager[None]:
        """Context manager: run the model with its original dense attention."""


class ModelAdapter(ABC):
    """Answers a :class:`Request`; the one interface benchmarks depend on."""

    model_name: str

    @abstractmethod
    def process_request(
        self,
        request: Request,
        generation_kwargs: dict[str, Any] | None = None,
        request_kwargs: dict[str, Any] | None = None,
    ) -> RequestResponse:
        """Answer every question of ``request`` against its context."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what the adapter registered or holds."""

    def __enter__(self) -> ModelAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
