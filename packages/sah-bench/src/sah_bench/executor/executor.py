"""``BenchmarkExecutor``: runs models × sparse configs × benchmarks × subsets.

Backends:

* ``inline`` — every cell in this process (no start-up cost; used by ``demo``);
* ``local`` — a pool of worker processes, one per device (GPU ids or ``"cpu"``), each pinned to
  its device; cells are handed out from a queue, a failing cell is recorded and the others go
  on, a worker that dies is replaced, and Ctrl-C stops every worker cleanly;
* ``ray`` — each cell a Ray task with its GPU request (extra ``sah-bench[ray]``).

Results land in ``<out>/<model>/<config>/<benchmark>_<subset>/``; see :mod:`.cell`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import CellResult, CellSpec
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY, AdapterCache, resolve_factory
from sah_bench.executor.storage import atomic_write_json, check_writable
from sah_bench.executor.worker import run_cell_with_cache, worker_main
from sah_bench.registry import get_benchmark, parse_benchmark_spec
from sah_protocol import ModelAdapter

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("inline", "local", "ray")
DENSE = "dense"


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark to run: its name, the subsets (None = all) and constructor options."""

    name: str
    subsets: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | BenchmarkSpec, options: Mapping[str, Any] | None = None) -> Any:
        if isinstance(spec, BenchmarkSpec):
            return spec
        name, subsets = parse_benchmark_spec(spec)
        return cls(name, tuple(subsets) if subsets else None, dict(options or {}))


class BenchmarkExecutor:
    """Plans and runs the matrix; every cell is resumable and independent.

    ``sparse_configs`` maps a config name to a ``ResearchAttentionConfig.to_dict()`` dict, or to
    None for dense attention. ``adapter_factory`` is ``"module:function"`` (or a callable, for
    the inline backend) building a :class:`~sah_protocol.ModelAdapter` from
    ``(model_name, sparse_config_dict_or_None)``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        adapter_factory: str | Callable[..., ModelAdapter] = DEFAULT_ADAPTER_FACTORY,
        backend: str = "inline",
        devices: Sequence[str | int] = ("cpu",),
        max_requests: int | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        request_kwargs: Mapping[str, Any] | None = None,
        progress: bool = True,
        gpus_per_cell: float = 0.0,
        ray_address: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not known; allowed: {list(BACKENDS)}")
        if backend != "inline" and not isinstance(adapter_factory, str):
            raise ValueError(
                f"backend {backend!r} runs cells in other processes, so adapter_factory must be "
                "an importable 'module:function' string, not a callable"
            )
        if not devices:
            raise ValueError("devices must name at least one device (GPU id or 'cpu')")
        if max_requests is not None and max_requests < 1:
            raise ValueError(f"max_requests must be >= 1 or None, got {max_requests}")
        self.out_dir = Path(out_dir)
        self.adapter_factory = adapter_factory
        self.backend = backend
        self.devices = [str(d) for d in devices]
        self.max_requests = max_requests
        self.generation_kwargs = dict(generation_kwargs or {})
        self.request_kwargs = dict(request_kwargs or {})
        self.progress = progress
        self.gpus_per_cell = float(gpus_per_cell)
        self.ray_address = ray_address

    # -- planning ----------------------------------------------------------------------------
    def plan(
        self,
        models: Sequence[str],
        sparse_configs: Mapping[str, dict[str, Any] | None],
        benchmarks: Iterable[str | BenchmarkSpec],
    ) -> list[CellSpec]:
        """The cells of the matrix, validated (unknown benchmark or subset -> ValueError)."""
        if not models:
            raise ValueError("models must name at least one model")
        if not sparse_configs:
            raise ValueError("sparse_configs must hold at least one config (use {'dense': None})")
        cells: list[CellSpec] = []
        specs = [BenchmarkSpec.parse(b) for b in benchmarks]
        if not specs:
            raise ValueError("benchmarks must name at least one benchmark")
        for bench_spec in specs:
            bench = get_benchmark(bench_spec.name, **dict(bench_spec.options))
            subsets = list(bench_spec.subsets or bench.subsets)
            for subset in subsets:
                bench.check_subset(subset)
            for model in models:
                for config_name, config in sparse_configs.items():
                    for subset in subsets:
                        cells.append(
                            CellSpec(
                                model=model,
                                config_name=config_name,
                                sparse_config=config,
                                benchmark=bench_spec.name,
                                subset=subset,
                                benchmark_options=dict(bench_spec.options),
                                max_requests=self.max_requests,
                                generation_kwargs=dict(self.generation_kwargs),
                                request_kwargs=dict(self.request_kwargs),
                            )
                        )
        # Cells of one (model, config) run back to back so a worker reuses its adapter.
        cells.sort(key=lambda c: (c.model, c.config_name))
        return cells

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        models: Sequence[str],
        sparse_configs: Mapping[str, dict[str, Any] | None],
        benchmarks: Iterable[str | BenchmarkSpec],
    ) -> list[CellResult]:
        cells = self.plan(models, sparse_configs, benchmarks)
        return self.run_cells(cells)

    def run_cells(self, cells: Sequence[CellSpec]) -> list[CellResult]:
        check_writable(self.out_dir)
        started = time.perf_counter()
        if self.backend == "inline":
            results = self._run_inline(cells)
        elif self.backend == "local":
            results = self._run_local(cells)
        else:
            from sah_bench.executor.ray_backend import run_ray

            results = run_ray(
                cells,
                self.out_dir,
                str(self.adapter_factory),
                gpus_per_cell=self.gpus_per_cell,
                address=self.ray_address,
                progress=self.progress,
            )
        self._write_summary(results, time.perf_counter() - started)
        return results

    def _matrix_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="matrix", unit="cell")

    def _run_inline(self, cells: Sequence[CellSpec]) -> list[CellResult]:
        cache = AdapterCache(resolve_factory(self.adapter_factory))
        bar = self._matrix_bar(len(cells))
        results: list[CellResult] = []
        try:
            for spec in cells:
                results.append(run_cell_with_cache(spec, self.out_dir, cache, self.progress))
                if bar is not None:
                    bar.update(1)
                if results[-1].status == "interrupted":
                    break
        except KeyboardInterrupt:
            logger.warning("interrupted: finished cells are kept, partial ones resume next run")
        finally:
            cache.close()
            if bar is not None:
                bar.close()
        return self._with_unfinished(cells, results)

    def _run_local(self, cells: Sequence[CellSpec]) -> list[CellResult]:
        ctx = mp.get_context("spawn")  # fresh interpreters: safe with CUDA and threads
        tasks: Any = ctx.Queue()
        events: Any = ctx.Queue()
        for spec in cells:
            tasks.put(spec)
        # One worker slot per device entry; a slot's process is replaced if it dies.
        slots: dict[int, tuple[str, Any]] = {}
        running: dict[int, str] = {}  # pid -> key of the cell that process is running
        by_key = {c.key: c for c in cells}

        def start(slot: int, device: str) -> None:
            proc = ctx.Process(
                target=worker_main,
                args=(
                    device,
                    str(self.adapter_factory),
                    str(self.out_dir),
                    tasks,
                    events,
                    os.getpid(),
                    self.progress,
                ),
                name=f"sah-bench-worker-{slot}-{device}",
                daemon=True,
            )
            proc.start()
            slots[slot] = (device, proc)

        for slot, device in enumerate(self.devices[: max(1, len(cells))]):
            start(slot, device)
        bar = self._matrix_bar(len(cells))
        results: dict[str, CellResult] = {}
        interrupted = False
        try:
            while len(results) < len(cells):
                try:
                    kind, key, payload = events.get(timeout=1.0)
                except queue.Empty:
                    self._reap_dead_workers(slots, running, results, by_key, start)
                    continue
                if kind == "started":
                    running[payload] = key
                else:
                    results[key] = payload
                    running = {p: k for p, k in running.items() if k != key}
                    if bar is not None:
                        bar.update(1)
            for _ in slots:
                tasks.put(None)  # let idle workers exit on their own
        except KeyboardInterrupt:
            logger.warning("interrupted: stopping workers; partial cells resume next run")
            interrupted = True
        finally:
            for _, proc in slots.values():
                proc.join(timeout=0 if interrupted else 5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=10)
            if bar is not None:
                bar.close()
        ordered = [results[c.key] for c in cells if c.key in results]
        return self._with_unfinished(cells, ordered)

    def _reap_dead_workers(
        self,
        slots: dict[int, tuple[str, Any]],
        running: dict[int, str],
        results: dict[str, CellResult],
        by_key: dict[str, CellSpec],
        start: Callable[[int, str], None],
    ) -> None:
        for slot, (device, proc) in list(slots.items()):
            if proc.is_alive():
                continue
            lost = running.pop(proc.pid, None)
            if lost is not None:
                spec = by_key[lost]
                results[lost] = CellResult(
                    spec.key,
                    str(spec.cell_dir(self.out_dir)),
                    "failed",
                    error=f"worker process on {device} died (exit code {proc.exitcode})",
                )
            if len(results) < len(by_key):
                logger.warning(
                    "worker on %s exited (%s); starting a new one", device, proc.exitcode
                )
                start(slot, device)

    @staticmethod
    def _with_unfinished(cells: Sequence[CellSpec], results: list[CellResult]) -> list[CellResult]:
        seen = {r.key for r in results}
        return results + [CellResult(c.key, "", "interrupted") for c in cells if c.key not in seen]

    def _write_summary(self, results: list[CellResult], seconds: float) -> None:
        summary = {
            "backend": self.backend,
            "seconds": seconds,
            "counts": {
                s: sum(r.status == s for r in results)
                for s in ("done", "skipped", "failed", "interrupted")
            },
            "cells": [asdict(r) for r in results],
        }
        try:
            atomic_write_json(self.out_dir / "run_summary.json", summary)
        except OSError:
            logger.exception("could not write run_summary.json")
        logger.info("run summary: %s", json.dumps(summary["counts"]))
