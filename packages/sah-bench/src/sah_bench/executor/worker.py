"""Running cells: in this process, or in a worker process pinned to one device."""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import CellResult, CellSpec, run_cell, skip_if_complete
from sah_bench.executor.factory import AdapterCache

logger = logging.getLogger(__name__)


def pin_device(device: str) -> None:
    """Make only ``device`` visible to this process (before torch initialises CUDA)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else str(device)


def run_cell_with_cache(
    spec: CellSpec,
    out_dir: Path,
    cache: AdapterCache,
    progress: bool,
    on_request_done: Callable[[str], None] | None = None,
) -> CellResult:
    """Build (or reuse) the adapter, then run the cell; adapter failures fail only this cell."""
    cell_dir = spec.cell_dir(out_dir)
    skipped = skip_if_complete(spec, out_dir)
    if skipped is not None:
        return skipped  # a finished cell must not cost a model load on resume
    try:
        adapter = cache.get(spec.model, spec.config_name, spec.sparse_config)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        from sah_bench.executor.storage import ERROR_FILE, atomic_write_json

        try:
            atomic_write_json(
                cell_dir / ERROR_FILE,
                {"error": message, "traceback": traceback.format_exc(), "spec": spec.to_dict()},
            )
        except OSError:
            logger.exception("could not record the error of cell %s", spec.key)
        return CellResult(spec.key, str(cell_dir), "failed", error=message)
    return run_cell(spec, out_dir, adapter, progress=progress, on_request_done=on_request_done)


def _exit_if_orphaned(parent_pid: int) -> None:
    """Stop at once when the parent died (e.g. SIGKILL): a restarted run redoes what is left,
    and an orphan still writing the same cell would only race it."""
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_main(
    device: str,
    factory: str,
    out_dir: str,
    tasks: Any,
    results: Any,
    parent_pid: int,
    progress: bool,
) -> None:
    """Body of a local worker process: take cells until a ``None`` sentinel arrives."""
    # The parent handles Ctrl-C and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_device(device)
    cache = AdapterCache(factory)
    try:
        while True:
            try:
                spec = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    return  # orphaned: the parent was killed
                continue
            if spec is None:
                return
            results.put(("started", spec.key, os.getpid()))
            t0 = time.perf_counter()
            result = run_cell_with_cache(
                spec, Path(out_dir), cache, progress, lambda _: _exit_if_orphaned(parent_pid)
            )
            if result.status != "skipped":
                result.seconds = time.perf_counter() - t0
            results.put(("finished", spec.key, result))
    finally:
        cache.close()
