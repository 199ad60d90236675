"""Running the cells of one group: one model over one benchmark subset, several sparse configs.

The cells are fed request-major (request 1 through every config, then request 2, ...), so the
benchmark rows are loaded once and, when the adapters offer it, the dense prefill of a context
is computed once and reused by every config that does not act in the prefill phase (see
:mod:`.context_sharing`). Each cell still has its own progress log, results and marker, so a
killed group resumes exactly like separate cells, and one failing config fails only its cell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import (
    CellResult,
    CellRun,
    CellSpec,
    load_groups,
    record_failure,
    skip_if_complete,
    why_redone,
)
from sah_bench.executor.context_sharing import share_context
from sah_bench.executor.factory import call_factory, resolve_factory
from sah_protocol import ModelAdapter

logger = logging.getLogger(__name__)


def split_into_groups(cells: Sequence[CellSpec], min_tasks: int = 1) -> list[list[CellSpec]]:
    """Cells grouped by :attr:`CellSpec.group_key`, in plan order; the largest groups are
    halved until there are ``min_tasks`` tasks (so every worker of a pool gets work)."""
    by_key: dict[str, list[CellSpec]] = {}
    for cell in cells:
        by_key.setdefault(cell.group_key, []).append(cell)
    tasks = list(by_key.values())
    while len(tasks) < min_tasks:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i]), default=None)
        if largest is None or len(tasks[largest]) < 2:
            break
        big = tasks.pop(largest)
        half = (len(big) + 1) // 2
        tasks[largest:largest] = [big[:half], big[half:]]
    return tasks


def run_group(
    specs: Sequence[CellSpec],
    out_dir: Path,
    factory: str | Callable[..., ModelAdapter],
    *,
    device: str | None = None,
    safetensors_only: bool = False,
    progress: bool = True,
    share: bool = True,
    on_result: Callable[[CellResult], None] | None = None,
    on_request_done: Callable[[str], None] | None = None,
) -> list[CellResult]:
    """Run (or resume, or skip) every cell of one group; never raises for a cell failure.

    ``on_result`` is called as soon as each cell's result is known (a worker reports it at
    once, so a later crash of the group loses no finished cell).
    """
    results: dict[str, CellResult] = {}

    def settle(result: CellResult) -> None:
        results[result.key] = result
        if on_result is not None:
            on_result(result)

    todo: list[CellSpec] = []
    for spec in specs:
        skipped = skip_if_complete(spec, out_dir)  # no model load for a finished cell
        if skipped is not None:
            settle(skipped)
        else:
            todo.append(spec)
    if todo:
        _run_todo(
            todo,
            out_dir,
            factory,
            {"device": device, "safetensors_only": safetensors_only},
            progress,
            share,
            settle,
            on_request_done,
        )
    return [results[s.key] for s in specs if s.key in results]


def _run_todo(
    todo: list[CellSpec],
    out_dir: Path,
    factory: str | Callable[..., ModelAdapter],
    placement: dict[str, Any],
    progress: bool,
    share: bool,
    settle: Callable[[CellResult], None],
    on_request_done: Callable[[str], None] | None,
) -> None:
    build = resolve_factory(factory)
    redone = {s.key: why_redone(s, out_dir) for s in todo}
    adapters: dict[str, ModelAdapter] = {}
    runs: dict[str, CellRun] = {}
    seconds: dict[str, float] = {}
    bar = None
    try:
        for spec in todo:
            t0 = time.perf_counter()
            try:
                adapters[spec.key] = call_factory(
                    build,
                    spec.model,
                    spec.sparse_config,
                    model_kwargs=spec.model_kwargs,
                    **placement,
                )
            except Exception as exc:
                settle(record_failure(spec, out_dir, exc, "adapter"))
            seconds[spec.key] = time.perf_counter() - t0
        live = [s for s in todo if s.key in adapters]
        if not live:
            return
        first = live[0]
        try:
            bench, groups = load_groups(first, adapters[first.key])
        except Exception as exc:  # every cell of the group reads the same rows
            for spec in live:
                settle(record_failure(spec, out_dir, exc, "data"))
            return
        for spec in live:
            try:
                runs[spec.key] = CellRun(spec, out_dir, adapters[spec.key], bench, groups)
            except Exception as exc:
                settle(record_failure(spec, out_dir, exc, "run"))
        if share:
            share_context([adapters[k] for k in runs])
        if progress:
            from tqdm.auto import tqdm

            desc = f"{first.model} | {first.benchmark}_{first.subset} x{len(runs)} configs"
            bar = tqdm(total=len(groups), desc=desc, unit="req", leave=False)
        for group in groups:
            for key, run in list(runs.items()):
                if not run.pending(group):
                    continue
                t0 = time.perf_counter()
                try:
                    run.answer(group)
                except Exception as exc:
                    run.close()
                    del runs[key]
                    settle(record_failure(run.spec, out_dir, exc, "run", seconds[key]))
                seconds[key] += time.perf_counter() - t0
            if on_request_done is not None:
                on_request_done(group.request_id)
            if bar is not None:
                bar.update(1)
        for key, run in runs.items():
            t0 = time.perf_counter()
            try:
                metrics = run.finish()
            except Exception as exc:
                settle(record_failure(run.spec, out_dir, exc, "run", seconds[key]))
                continue
            seconds[key] += time.perf_counter() - t0
            settle(
                CellResult(
                    key,
                    str(run.cell_dir),
                    "done",
                    metrics=metrics,
                    seconds=seconds[key],
                    redone=redone[key],
                )
            )
    finally:
        if bar is not None:
            bar.close()
        for run in runs.values():
            run.close()
        for adapter in adapters.values():
            try:
                adapter.close()
            except Exception:
                logger.exception("closing an adapter failed")
