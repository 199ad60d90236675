"""Run every tutorial script and notebook offline; exit non-zero if any fails.

Scripts (``py_examples/*.py``) run in a subprocess with this interpreter; notebooks
(``notebooks/*.py``, jupytext percent sources) are read with jupytext and executed with nbclient
on the ``python3`` kernel. Each item runs in its own child process and temporary working
directory, so nothing is written into the repository, with the HuggingFace hub switched
offline; ``--jobs`` items run at once (default: one per CPU core, at most 4). One line per
item as it finishes, then ``N passed, M failed``.

Usage: ``python tutorials/run_all.py [NAME_FILTER ...] [--timeout SECONDS] [--jobs N]``
(``uv run nox -s tutorials`` runs it in a venv with the ``tutorials`` dependency group).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS_DIR = HERE / "py_examples"
NOTEBOOKS_DIR = HERE / "notebooks"

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TQDM_DISABLE": "1",  # progress bars would only clutter the captured output
}


def tutorial_items() -> list[Path]:
    """Scripts first (cheapest feedback), then notebooks, each group in name order."""
    scripts = sorted(p for p in SCRIPTS_DIR.glob("*.py") if not p.name.startswith("_"))
    notebooks = sorted(NOTEBOOKS_DIR.glob("*.py"))
    return scripts + notebooks


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_script(path: Path, work_dir: Path, timeout: float) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [sys.executable, str(path)],
            cwd=work_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if done.returncode != 0:
        return False, f"exit code {done.returncode}\n{tail(done.stdout)}\n{tail(done.stderr)}"
    return True, tail(done.stdout, 1)


def run_notebook(
    path: Path, work_dir: Path, timeout: float, save_dir: Path | None = None
) -> tuple[bool, str]:
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    notebook = jupytext.read(path, fmt="py:percent")
    client = NotebookClient(
        notebook,
        timeout=int(timeout),
        kernel_name="python3",
        resources={"metadata": {"path": str(work_dir)}},
    )
    try:
        client.execute(cwd=str(work_dir))
    except CellTimeoutError:
        return False, f"a cell ran past {timeout:.0f} s"
    except CellExecutionError as error:
        return False, tail(str(error))
    finally:
        if save_dir is not None:  # executed copy, outputs included, for reading
            save_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, save_dir / f"{path.stem}.ipynb")
    cells = sum(1 for cell in notebook.cells if cell.cell_type == "code")
    return True, f"{cells} code cells executed"


def child_cpu_seconds() -> float:
    """CPU time of finished child processes (scripts, notebook kernels) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_item(path: Path, timeout: float, save_dir: Path | None) -> tuple[bool, str, float]:
    """Run one item here (called in the item's own child process); CPU time includes its
    script subprocess or notebook kernel."""
    with tempfile.TemporaryDirectory(prefix="sah-tutorial-") as scratch:
        if path.parent == NOTEBOOKS_DIR:
            ok, detail = run_notebook(path, Path(scratch), timeout, save_dir)
        else:
            ok, detail = run_script(path, Path(scratch), timeout)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return ok, detail, own.ru_utime + own.ru_stime + child_cpu_seconds()


def run_in_child(path: Path, timeout: float, save_dir: Path | None) -> tuple[bool, str, float]:
    """Run one item in a fresh interpreter, so items can run side by side."""
    command = [sys.executable, __file__, "--item", str(path), "--timeout", str(timeout)]
    if save_dir is not None:
        command += ["--save-executed", str(save_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return bool(result["ok"]), str(result["detail"]), float(result["cpu"])
    except (IndexError, KeyError, ValueError):
        return False, f"runner exit code {done.returncode}\n{tail(done.stderr)}", 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only items whose file name contains one")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per script / per notebook cell"
    )
    parser.add_argument(
        "--save-executed",
        type=Path,
        default=None,
        help="write executed notebooks (with outputs) into this folder",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="items run at once (default: one per CPU core, at most 4)",
    )
    parser.add_argument("--item", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.update(OFFLINE_ENV)  # inherited by the scripts' subprocesses and the kernels
    if args.item is not None:  # child mode: one item, one JSON line for the parent
        ok, detail, cpu = run_item(args.item, args.timeout, args.save_executed)
        print(json.dumps({"ok": ok, "detail": detail, "cpu": cpu}))
        return 0
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs} is not allowed: use 1 or more")

    items = [p for p in tutorial_items() if not args.names or any(n in p.name for n in args.names)]
    if not items:
        print(f"no tutorial matches {args.names}")
        return 1
    passed = failed = 0
    cpu_total = 0.0
    started = time.perf_counter()

    def timed(path: Path) -> tuple[Path, bool, str, float, float]:
        item_start = time.perf_counter()
        ok, detail, cpu = run_in_child(path, args.timeout, args.save_executed)
        return path, ok, detail, time.perf_counter() - item_start, cpu

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in concurrent.futures.as_completed([pool.submit(timed, p) for p in items]):
            path, ok, detail, wall, cpu = future.result()
            cpu_total += cpu
            # wall time depends on machine load; CPU time of the item is the steadier number
            timing = f"{wall:.1f} s wall, {cpu:.1f} s CPU"
            name = path.relative_to(HERE).as_posix()
            if ok:
                passed += 1
                print(f"PASS {name} ({timing}): {detail}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name} ({timing}):\n{detail}", flush=True)
    total = time.perf_counter() - started
    print(f"{passed} passed, {failed} failed ({total:.0f} s wall, {cpu_total:.0f} s CPU)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
