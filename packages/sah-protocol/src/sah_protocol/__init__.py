"""Contracts shared by every Sparse Attention Hub package. Imports nothing heavy."""

from sah_protocol.adapters import (
    ModelAdapter,
    ModelHubAdapterInterface,
    SparseAttentionAdapterInterface,
)
from sah_protocol.benchmarks import BenchmarkProtocol, ScorerProtocol
from sah_protocol.maskers import MaskerConfigProtocol, MaskerProtocol, SamplingMaskerProtocol
from sah_protocol.request import Request, RequestResponse
from sah_protocol.results import (
    BENCHMARKS_ENTRY_POINT_GROUP,
    MASKERS_ENTRY_POINT_GROUP,
    ResultRecord,
)

__version__ = "0.1.0"

__all__ = [
    "BENCHMARKS_ENTRY_POINT_GROUP",
    "MASKERS_ENTRY_POINT_GROUP",
    "BenchmarkProtocol",
    "MaskerConfigProtocol",
    "MaskerProtocol",
    "ModelAdapter",
    "ModelHubAdapterInterface",
    "Request",
    "RequestResponse",
    "ResultRecord",
    "SamplingMaskerProtocol",
    "ScorerProtocol",
    "SparseAttentionAdapterInterface",
]
