"""The Ray backend: each group of cells (one model over one subset, several configs; see
:mod:`.group`) is a Ray task that asks for its GPUs, so one matrix spreads over a cluster.
Ray sets ``CUDA_VISIBLE_DEVICES`` for every task, which pins it to its GPUs. The output
folder must be on storage every node can write (a shared filesystem).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import CellResult, CellSpec

logger = logging.getLogger(__name__)


def _run_one(
    specs: list[CellSpec], out_dir: str, factory: str, share: bool, safetensors_only: bool
) -> list[CellResult]:
    import os

    from sah_bench.executor.group import run_group

    # Ray pins the task to its GPUs through CUDA_VISIBLE_DEVICES; the model goes on the first.
    device = "cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") else None
    return run_group(
        specs,
        Path(out_dir),
        factory,
        device=device,
        safetensors_only=safetensors_only,
        progress=False,
        share=share,
    )


def run_ray(
    groups: Sequence[list[CellSpec]],
    out_dir: Path,
    factory: str,
    *,
    gpus_per_cell: float = 0.0,
    address: str | None = None,
    progress: bool = True,
    share: bool = True,
    safetensors_only: bool = False,
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
    pending: dict[Any, list[CellSpec]] = {
        task.remote(specs, str(out_dir), factory, share, safetensors_only): specs
        for specs in groups
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(g) for g in groups), desc="matrix (ray)", unit="cell")
    results: dict[str, CellResult] = {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            specs = pending.pop(done[0])
            try:
                for result in ray.get(done[0]):
                    results[result.key] = result
            except Exception as exc:  # the task itself crashed (e.g. its worker died)
                for spec in specs:
                    results.setdefault(
                        spec.key,
                        CellResult(
                            spec.key,
                            str(spec.cell_dir(out_dir)),
                            "failed",
                            error=f"ray task: {exc}",
                            category="run",
                        ),
                    )
            if bar is not None:
                bar.update(len(specs))
    except KeyboardInterrupt:
        logger.warning("interrupted: cancelling Ray tasks; partial cells resume next run")
        for ref in pending:
            ray.cancel(ref, force=True)
    finally:
        if bar is not None:
            bar.close()
        if started_here:
            ray.shutdown()
    cells = [spec for specs in groups for spec in specs]
    return [results[c.key] for c in cells if c.key in results]
