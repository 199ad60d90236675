"""Finding benchmarks through the ``sah.benchmarks`` entry-point group.

A downstream package adds a benchmark by declaring
``[project.entry-points."sah.benchmarks"] my_bench = "my_pkg.bench:MyBenchmark"``; nothing in
this repository has to change.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sah_protocol import BENCHMARKS_ENTRY_POINT_GROUP

#: The benchmark run when none is named.
DEFAULT_BENCHMARK = "synthetic"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=BENCHMARKS_ENTRY_POINT_GROUP)}


def list_benchmarks() -> list[str]:
    """Names of every installed benchmark, sorted."""
    return sorted(_entry_points())


def get_benchmark_class(name: str) -> type[Any]:
    eps = _entry_points()
    if name not in eps:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {sorted(eps)}")
    return eps[name].load()  # type: ignore[no-any-return]


def get_benchmark(name: str, **options: Any) -> Any:
    """An instance of benchmark ``name`` built with ``options`` (e.g. ``data_path=...``)."""
    cls = get_benchmark_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"benchmark {name!r}: bad options {sorted(options)}: {exc}") from None


def parse_benchmark_spec(spec: str) -> tuple[str, list[str] | None]:
    """``"longbench:qasper,trec"`` -> ``("longbench", ["qasper", "trec"])``; no subsets -> None."""
    name, _, subsets = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"benchmark spec {spec!r} has no name; use NAME or NAME:SUB1,SUB2")
    parsed = [s.strip() for s in subsets.split(",") if s.strip()] if subsets else None
    return name, parsed
