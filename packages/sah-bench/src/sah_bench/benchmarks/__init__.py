"""The benchmarks, one per module; each is registered under ``sah.benchmarks``."""

from sah_bench.benchmarks.aime import Aime2024, Aime2025
from sah_bench.benchmarks.base import Benchmark
from sah_bench.benchmarks.infinitebench import InfiniteBench
from sah_bench.benchmarks.loft_rag import LoftRag
from sah_bench.benchmarks.longbench import LongBench
from sah_bench.benchmarks.longbench_v2 import LongBenchV2
from sah_bench.benchmarks.loogle import LooGLE
from sah_bench.benchmarks.mock import MockBenchmark
from sah_bench.benchmarks.ruler import Ruler, Ruler16K, Ruler32K
from sah_bench.benchmarks.synthetic import SyntheticBenchmark
from sah_bench.benchmarks.zeroscrolls import ZeroScrolls

__all__ = [
    "Aime2024",
    "Aime2025",
    "Benchmark",
    "InfiniteBench",
    "LoftRag",
    "LongBench",
    "LongBenchV2",
    "LooGLE",
    "MockBenchmark",
    "Ruler",
    "Ruler16K",
    "Ruler32K",
    "SyntheticBenchmark",
    "ZeroScrolls",
]
