"""Run every tutorial script and notebook offline; exit non-zero if any fails.

Scripts (``py_examples/*.py``) run in a subprocess with this interpreter; notebooks
(``notebooks/*.py``, jupytext percent sources) are read with jupytext and executed with nbclient
on the ``python3`` kernel. Each item runs
in its own temporary working directory, so nothing is written into the repository, with the
HuggingFace hub switched offline. One line per item, then ``N passed, M failed``.

Usage: ``python tutorials/run_all.py [NAME_FILTER ...] [--timeout SECONDS]``
(``uv run nox -s tutorials`` runs it in a venv with the ``tutorials`` dependency group).
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)
    os.environ.update(OFFLINE_ENV)  # inherited by the scripts' subprocesses and the kernels

    items = [p for p in tutorial_items() if not args.names or any(n in p.name for n in args.names)]
    if not items:
        print(f"no tutorial matches {args.names}")
        return 1
    passed = failed = 0
    started = time.perf_counter()
    for path in items:
        item_start = time.perf_counter()
        cpu_start = child_cpu_seconds()
        with tempfile.TemporaryDirectory(prefix="sah-tutorial-") as scratch:
            if path.parent == NOTEBOOKS_DIR:
                ok, detail = run_notebook(path, Path(scratch), args.timeout, args.save_executed)
            else:
                ok, detail = run_script(path, Path(scratch), args.timeout)
        # wall time depends on machine load; CPU time of the child is the steadier number
        timing = (
            f"{time.perf_counter() - item_start:.1f} s wall, "
            f"{child_cpu_seconds() - cpu_start:.1f} s CPU"
        )
        name = path.relative_to(HERE).as_posix()
        if ok:
            passed += 1
            print(f"PASS {name} ({timing}): {detail}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name} ({timing}):\n{detail}", flush=True)
    total = time.perf_counter() - started
    print(f"{passed} passed, {failed} failed ({total:.0f} s wall, {child_cpu_seconds():.0f} s CPU)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
