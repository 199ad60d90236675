"""The benchmark executor: matrix planning, resumable cells, inline / local / Ray backends."""

from sah_bench.executor.cell import CellResult, CellSpec, run_cell, safe_name
from sah_bench.executor.errors import CATEGORIES, ConfigError, DataError, ModelLoadError
from sah_bench.executor.executor import BACKENDS, BenchmarkExecutor, BenchmarkSpec, check_device
from sah_bench.executor.factory import (
    DEFAULT_ADAPTER_FACTORY,
    AdapterCache,
    build_hf_adapter,
)

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "DEFAULT_ADAPTER_FACTORY",
    "AdapterCache",
    "BenchmarkExecutor",
    "BenchmarkSpec",
    "CellResult",
    "CellSpec",
    "ConfigError",
    "DataError",
    "ModelLoadError",
    "build_hf_adapter",
    "check_device",
    "run_cell",
    "safe_name",
]
