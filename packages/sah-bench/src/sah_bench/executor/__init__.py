"""The benchmark executor: matrix planning, resumable cells, inline / local / Ray backends."""

from sah_bench.executor.cell import CellResult, CellSpec, run_cell, safe_name
from sah_bench.executor.executor import BACKENDS, BenchmarkExecutor, BenchmarkSpec
from sah_bench.executor.factory import (
    DEFAULT_ADAPTER_FACTORY,
    AdapterCache,
    ModelLoadError,
    build_hf_adapter,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_ADAPTER_FACTORY",
    "AdapterCache",
    "BenchmarkExecutor",
    "BenchmarkSpec",
    "CellResult",
    "CellSpec",
    "ModelLoadError",
    "build_hf_adapter",
    "run_cell",
    "safe_name",
]
