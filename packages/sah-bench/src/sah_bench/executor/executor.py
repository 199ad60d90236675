"""``BenchmarkExecutor``: runs models × sparse configs × benchmarks × subsets.

Backends:

* ``inline`` — every cell in this process (no start-up cost; used by ``demo``);
* ``local`` — a pool of worker processes, one per device (``cuda:N`` / ``N``, ``cuda``,
  ``cpu``), each pinned to its GPU with the model placed on it; the parent hands each idle
  worker one task through the worker's own queue, so it always knows which cells a worker
  holds: a failing cell is recorded and the others go on, a worker that dies fails only the
  cells it held and is replaced, and Ctrl-C stops every worker cleanly;
* ``ray`` — each task a Ray task with its GPU request (extra ``sah-bench[ray]``).

A task is one *group*: the cells of one model over one benchmark subset under several sparse
configs, run request-major so the rows are loaded once and each context's dense prefill can be
shared (:mod:`.group`). The same cell named twice in a matrix is planned once (with a warning);
two different cells whose names map to one result folder are refused before any work.

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

from sah_bench.executor.cell import CellResult, CellSpec, check_unique_dirs
from sah_bench.executor.errors import CATEGORIES
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY, resolve_factory
from sah_bench.executor.group import run_group, split_into_groups
from sah_bench.executor.micro_metrics import DEFAULT_MICRO_METRICS, check_micro_metrics
from sah_bench.executor.storage import atomic_write_json, check_writable
from sah_bench.executor.worker import gpu_index, worker_main
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
    ``(model_name, sparse_config_dict_or_None)`` (plus ``model_kwargs=``/``device=`` when it
    takes them). ``devices``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``N``; the inline backend
    places models on the first. ``micro_metrics``: any of ``density``, ``output_error``,
    ``attention_mass_recall`` (alias ``mass_recall``). ``share_context=False`` turns off the
    shared dense prefill (for measuring what it saves). ``safetensors_only=True`` makes the
    default factory refuse pickle checkpoints (the CLI's default).
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
        model_kwargs: Mapping[str, Any] | None = None,
        micro_metrics: Sequence[str] = DEFAULT_MICRO_METRICS,
        progress: bool = True,
        gpus_per_cell: float = 0.0,
        ray_address: str | None = None,
        share_context: bool = True,
        safetensors_only: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not known; allowed: {list(BACKENDS)}")
        if backend != "inline" and not isinstance(adapter_factory, str):
            raise ValueError(
                f"backend {backend!r} runs cells in other processes, so adapter_factory must be "
                "an importable 'module:function' string, not a callable"
            )
        if isinstance(devices, str | int) or not devices:
            raise ValueError(
                f"devices={devices!r} must be a non-empty list of devices ('cpu', 'cuda', "
                "'cuda:N' or a GPU index N)"
            )
        if max_requests is not None and (
            isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1
        ):
            raise ValueError(f"max_requests={max_requests!r} must be an int >= 1 or None")
        self.out_dir = Path(out_dir)
        self.adapter_factory = adapter_factory
        self.backend = backend
        self.devices = [check_device(d) for d in devices]
        duplicated = sorted({d for d in self.devices if self.devices.count(d) > 1 and d != "cpu"})
        if duplicated:
            raise ValueError(
                f"devices {duplicated} are listed more than once; one worker per GPU "
                "(list 'cpu' several times for several CPU workers)"
            )
        self.max_requests = max_requests
        self.generation_kwargs = dict(generation_kwargs or {})
        self.request_kwargs = dict(request_kwargs or {})
        self.model_kwargs = dict(model_kwargs or {})
        self.micro_metrics = check_micro_metrics(micro_metrics)
        self.progress = progress
        self.gpus_per_cell = float(gpus_per_cell)
        self.ray_address = ray_address
        self.share_context = share_context
        self.safetensors_only = bool(safetensors_only)
        #: Cells redone because their "complete" results were damaged, with the reason.
        self.redone: dict[str, str] = {}

    # -- planning ----------------------------------------------------------------------------
    def plan(
        self,
        models: Sequence[str],
        sparse_configs: Mapping[str, dict[str, Any] | None],
        benchmarks: Iterable[str | BenchmarkSpec],
    ) -> list[CellSpec]:
        """The distinct cells of the matrix, validated before any work.

        Unknown benchmark or subset -> ValueError; a cell named twice (``-m X -m X``,
        ``synthetic:vt,vt``) is planned once, with a warning; two different cells that would
        share one result folder -> ValueError. Cells of one model over one subset are adjacent
        (their configs run back to back over each context).
        """
        if isinstance(models, str) or not models:
            raise ValueError(f"models={models!r} must be a non-empty list of model names")
        for model in models:
            if not isinstance(model, str) or not model.strip():
                raise ValueError(f"model name {model!r} must be a non-empty str")
        if not isinstance(sparse_configs, Mapping) or not sparse_configs:
            raise ValueError("sparse_configs must hold at least one config (use {'dense': None})")
        for name, config in sparse_configs.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"sparse config name {name!r} must be a non-empty str")
            if name == DENSE and config is not None:
                raise ValueError(
                    "sparse config name 'dense' is reserved for dense attention (None), but it "
                    "holds a sparse config; rename it (e.g. after its file)"
                )
        if isinstance(benchmarks, str):
            benchmarks = [benchmarks]
        specs = [BenchmarkSpec.parse(b) for b in benchmarks]
        if not specs:
            raise ValueError("benchmarks must name at least one benchmark")
        cells: list[CellSpec] = []
        seen: set[tuple[str, str, str, str]] = set()
        duplicates: list[str] = []
        for bench_spec in specs:
            bench = get_benchmark(bench_spec.name, **dict(bench_spec.options))
            subsets = list(bench_spec.subsets or bench.subsets)
            for subset in subsets:
                bench.check_subset(subset)
            for model in models:
                for config_name, config in sparse_configs.items():
                    for subset in subsets:
                        cell = CellSpec(
                            model=model,
                            config_name=config_name,
                            sparse_config=config,
                            benchmark=bench_spec.name,
                            subset=subset,
                            benchmark_options=dict(bench_spec.options),
                            max_requests=self.max_requests,
                            generation_kwargs=dict(self.generation_kwargs),
                            micro_metrics=self.micro_metrics,
                            request_kwargs=dict(self.request_kwargs),
                            model_kwargs=dict(self.model_kwargs),
                        )
                        if cell.identity in seen:
                            duplicates.append(cell.key)
                            continue
                        seen.add(cell.identity)
                        cells.append(cell)
        if duplicates:
            logger.warning(
                "the matrix names %d cell(s) more than once; each runs once: %s",
                len(duplicates),
                sorted(set(duplicates)),
            )
        check_unique_dirs(cells, self.out_dir)
        # The configs of one model over one subset run back to back (one group).
        order = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in cells))}
        cells.sort(key=lambda c: (order[c.model], c.benchmark, c.subset))
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
        distinct = list({c.key: c for c in cells}.values())  # a wait never counts a cell twice
        check_unique_dirs(distinct, self.out_dir)
        check_writable(self.out_dir)
        started = time.perf_counter()
        if self.backend == "inline":
            results = self._run_inline(distinct)
        elif self.backend == "local":
            results = self._run_local(distinct)
        else:
            from sah_bench.executor.ray_backend import run_ray

            results = run_ray(
                split_into_groups(distinct),
                self.out_dir,
                str(self.adapter_factory),
                gpus_per_cell=self.gpus_per_cell,
                address=self.ray_address,
                progress=self.progress,
                share=self.share_context,
                safetensors_only=self.safetensors_only,
            )
            results = self._with_unfinished(distinct, results)
        self.redone = {r.key: r.redone for r in results if r.redone}
        for key, why in self.redone.items():
            logger.warning("cell %s was redone: its earlier result was damaged (%s)", key, why)
        self._write_summary(results, time.perf_counter() - started)
        return results

    def _matrix_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="matrix", unit="cell")

    def _run_inline(self, cells: Sequence[CellSpec]) -> list[CellResult]:
        factory = resolve_factory(self.adapter_factory)
        bar = self._matrix_bar(len(cells))
        results: list[CellResult] = []

        def settle(result: CellResult) -> None:
            results.append(result)
            if bar is not None:
                bar.update(1)

        try:
            for group in split_into_groups(cells):
                run_group(
                    group,
                    self.out_dir,
                    factory,
                    device=self.devices[0],
                    safetensors_only=self.safetensors_only,
                    progress=self.progress,
                    share=self.share_context,
                    on_result=settle,
                )
        except KeyboardInterrupt:
            logger.warning("interrupted: finished cells are kept, partial ones resume next run")
        finally:
            if bar is not None:
                bar.close()
        return self._with_unfinished(cells, results)

    def _run_local(self, cells: Sequence[CellSpec]) -> list[CellResult]:
        ctx = mp.get_context("spawn")  # fresh interpreters: safe with CUDA and threads
        groups = split_into_groups(cells, min_tasks=len(self.devices))
        pending = list(range(len(groups)))  # task ids not yet handed out
        events: Any = ctx.Queue()
        # One worker per device entry, each with its own task queue: the parent always knows
        # which task a worker holds, so a dead worker fails exactly its own unfinished cells.
        workers: dict[int, tuple[str, Any, Any]] = {}  # slot -> (device, process, its queue)
        holding: dict[int, int] = {}  # slot -> task id it is running
        results: dict[str, CellResult] = {}

        def start(slot: int, device: str) -> None:
            tasks: Any = ctx.Queue()
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
                    self.share_context,
                    self.safetensors_only,
                ),
                name=f"sah-bench-worker-{slot}-{device}",
                daemon=True,
            )
            proc.start()
            workers[slot] = (device, proc, tasks)

        def hand_out(slot: int) -> None:
            if pending and slot not in holding:
                task_id = pending.pop(0)
                holding[slot] = task_id
                workers[slot][2].put((task_id, groups[task_id]))

        for slot, device in enumerate(self.devices[: max(1, len(groups))]):
            start(slot, device)
            hand_out(slot)
        bar = self._matrix_bar(len(cells))
        interrupted = False
        try:
            while holding:
                try:
                    kind, task_id, payload = events.get(timeout=1.0)
                except queue.Empty:
                    self._reap_dead_workers(
                        workers, holding, groups, results, start, hand_out, pending
                    )
                    continue
                if kind == "cell":
                    if payload.key not in results and bar is not None:
                        bar.update(1)
                    results[payload.key] = payload
                    continue
                owner = next((s for s, t in holding.items() if t == task_id), None)
                if owner is not None:
                    del holding[owner]
                    hand_out(owner)
            for _, _, tasks in workers.values():
                tasks.put(None)  # let idle workers exit on their own
        except KeyboardInterrupt:
            logger.warning("interrupted: stopping workers; partial cells resume next run")
            interrupted = True
        finally:
            for _, proc, _ in workers.values():
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
        workers: dict[int, tuple[str, Any, Any]],
        holding: dict[int, int],
        groups: list[list[CellSpec]],
        results: dict[str, CellResult],
        start: Callable[[int, str], None],
        hand_out: Callable[[int], None],
        pending: list[int],
    ) -> None:
        for slot, (device, proc, _) in list(workers.items()):
            if proc.is_alive():
                continue
            del workers[slot]
            task_id = holding.pop(slot, None)
            if task_id is not None:
                logger.warning("worker on %s died (exit code %s)", device, proc.exitcode)
                for spec in groups[task_id]:
                    if spec.key not in results:
                        results[spec.key] = CellResult(
                            spec.key,
                            str(spec.cell_dir(self.out_dir)),
                            "failed",
                            error=f"worker process on {device} died (exit code {proc.exitcode})",
                            category="run",
                        )
            if pending:  # a replacement takes the next task; every task is handed out once
                start(slot, device)
                hand_out(slot)

    @staticmethod
    def _with_unfinished(cells: Sequence[CellSpec], results: list[CellResult]) -> list[CellResult]:
        seen = {r.key for r in results}
        return results + [CellResult(c.key, "", "interrupted") for c in cells if c.key not in seen]

    def _write_summary(self, results: list[CellResult], seconds: float) -> None:
        failed = [r for r in results if r.status == "failed"]
        summary = {
            "backend": self.backend,
            "seconds": seconds,
            "counts": {
                s: sum(r.status == s for r in results)
                for s in ("done", "skipped", "failed", "interrupted")
            },
            "failures_by_category": {c: sum(r.category == c for r in failed) for c in CATEGORIES},
            "redone_damaged": dict(self.redone),
            "cells": [asdict(r) for r in results],
        }
        try:
            atomic_write_json(self.out_dir / "run_summary.json", summary)
        except OSError:
            logger.exception("could not write run_summary.json")
        logger.info("run summary: %s", json.dumps(summary["counts"]))


def check_device(device: str | int) -> str:
    """A device entry in its canonical form: ``cpu``, ``cuda``, ``cuda:N`` (``N`` -> ``cuda:N``;
    ``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``).

    Only the spelling is checked here; whether the GPU exists is checked by the CLI before any
    work (it needs torch).
    """
    if isinstance(device, bool) or not isinstance(device, str | int):
        raise ValueError(
            f"device {device!r} must be a str or int: 'cpu', 'cuda', 'cuda:N' or a GPU index N"
        )
    text = str(device).strip().lower()
    if text in ("cpu", "cuda"):
        return text
    if text == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    index = gpu_index(text)
    if index is None:
        raise ValueError(
            f"device {device!r} is not allowed; use 'cpu', 'cuda', 'cuda:N', 'auto' or a GPU "
            "index N"
        )
    return f"cuda:{index}"
