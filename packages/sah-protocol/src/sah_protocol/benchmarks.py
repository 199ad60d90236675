"""Protocols for benchmarks and scorers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScorerProtocol(Protocol):
    """Scores one prediction against its reference answers; returns a value in [0, 1]."""

    def __call__(self, prediction: str, answers: Sequence[str], **kwargs: Any) -> float: ...


@runtime_checkable
class BenchmarkProtocol(Protocol):
    """A long-context benchmark: rows in the common schema plus the official scorer per subset.

    Rows are mappings with the keys ``context, question, answer_prefix, answers, task,
    max_new_tokens``.
    """

    name: str

    @property
    def subsets(self) -> Sequence[str]: ...

    def load_rows(self, subset: str, max_rows: int | None = None) -> Iterable[dict[str, Any]]: ...

    def score(self, subset: str, prediction: str, answers: Sequence[str]) -> float: ...
