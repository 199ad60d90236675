"""Running cells in a worker process pinned to one device, and where a device puts the model."""

from __future__ import annotations

import logging
import os
import queue
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sah_bench.executor.cell import CellResult, CellSpec
from sah_bench.executor.factory import AdapterCache
from sah_bench.executor.group import run_group

logger = logging.getLogger(__name__)


def gpu_index(device: str) -> int | None:
    """``"cuda:3"`` / ``"3"`` -> 3; ``"cuda"``, ``"cpu"`` -> None."""
    text = device.removeprefix("cuda:")
    return int(text) if text.isdigit() else None


def pin_device(device: str) -> str:
    """Make only ``device`` visible to this process (before torch initialises CUDA); return
    where the model goes inside it: ``"cpu"``, or ``"cuda"`` (the pinned GPU, or the default
    one for a bare ``"cuda"``)."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    index = gpu_index(device)
    if index is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
    return "cuda"


def run_cell_with_cache(
    spec: CellSpec,
    out_dir: Path,
    cache: AdapterCache,
    progress: bool,
    on_request_done: Callable[[str], None] | None = None,
) -> CellResult:
    """One cell with the cache's factory and device (kept for callers of 0.1.0)."""
    results = run_group(
        [spec],
        out_dir,
        cache._factory,
        device=cache.device,
        progress=progress,
        on_request_done=on_request_done,
    )
    return results[0]


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
    share: bool = True,
    safetensors_only: bool = False,
) -> None:
    """Body of a local worker: take tasks ``(task_id, [CellSpec, ...])`` from its own queue
    until a ``None`` arrives; report ``("cell", task_id, CellResult)`` per cell and
    ``("task", task_id, None)`` when a task is over."""
    # The parent handles Ctrl-C and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    placement = pin_device(device)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return  # orphaned: the parent was killed
            continue
        if task is None:
            return
        task_id, specs = task

        def report(result: CellResult, task_id: int = task_id) -> None:
            results.put(("cell", task_id, result))

        run_group(
            specs,
            Path(out_dir),
            factory,
            device=placement,
            safetensors_only=safetensors_only,
            progress=progress,
            share=share,
            on_result=report,
            on_request_done=lambda _: _exit_if_orphaned(parent_pid),
        )
        results.put(("task", task_id, None))
