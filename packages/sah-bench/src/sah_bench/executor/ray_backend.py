"""The Ray backend: each cell is a Ray task that asks for its GPUs, so one matrix spreads over a
cluster. Ray sets ``CUDA_VISIBLE_DEVICES`` for every task, which pins it to its GPUs. The output
folder must be on storage every node can write (a shared filesystem).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import CellResult, CellSpec

logger = logging.getLogger(__name__)


def _run_one(spec: CellSpec, out_dir: str, factory: str) -> CellResult:
    from sah_bench.executor.factory import AdapterCache
    from sah_bench.executor.worker import run_cell_with_cache

    cache = AdapterCache(factory)
    try:
        return run_cell_with_cache(spec, Path(out_dir), cache, progress=False)
    finally:
        cache.close()


def run_ray(
    cells: Sequence[CellSpec],
    out_dir: Path,
    factory: str,
    *,
    gpus_per_cell: float = 0.0,
    address: str | None = None,
    progress: bool = True,
) -> list[CellResult]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "backend 'ray' needs the ray package; install it with `pip install sah-bench[ray]`"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    task = ray.remote(num_gpus=gpus_per_cell, num_cpus=1)(_run_one)
    pending: dict[Any, CellSpec] = {
        task.remote(spec, str(out_dir), factory): spec for spec in cells
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), desc="matrix (ray)", unit="cell")
    results: dict[str, CellResult] = {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                results[spec.key] = ray.get(done[0])
            except Exception as exc:  # the task itself crashed (e.g. its worker died)
                results[spec.key] = CellResult(
                    spec.key, str(spec.cell_dir(out_dir)), "failed", error=f"ray task: {exc}"
                )
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        logger.warning("interrupted: cancelling Ray tasks; partial cells resume next run")
        for ref in pending:
            ray.cancel(ref, force=True)
    finally:
        if bar is not None:
            bar.close()
        if started_here:
            ray.shutdown()
    return [results.get(c.key) or CellResult(c.key, "", "interrupted") for c in cells]
