"""The schema of one result row written by the benchmark executor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Entry-point group through which masker configs/maskers are found.
MASKERS_ENTRY_POINT_GROUP = "sah.maskers"
#: Entry-point group through which benchmarks are found.
BENCHMARKS_ENTRY_POINT_GROUP = "sah.benchmarks"


@dataclass(frozen=True)
class ResultRecord:
    """One answered question: what was asked, what came back, and how it scored."""

    model: str
    config: str
    benchmark: str
    subset: str
    request_id: str
    question: str
    prediction: str
    answers: list[str]
    score: float
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    total_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
