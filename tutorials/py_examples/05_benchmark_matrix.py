"""A tiny benchmark matrix: 1 model x (dense, Sink+Local) x 1 synthetic task, and its report.

``BenchmarkExecutor`` runs every cell (model, sparse config, benchmark subset) of the matrix
and writes each one's answers and metrics to ``<out>/<model>/<config>/<benchmark>_<subset>/``;
a finished cell is skipped when the same run is started again (resumable). The synthetic
suite generates RULER-style tasks offline, deterministically from a seed; here one
needle-in-a-haystack task with ~256-word contexts and 2 requests per cell keeps the run short.
The report is written by the ``sparse-attention-benchmark report`` command.

The same matrix from the command line::

    sparse-attention-benchmark run -m smollm2-135m -c dense -c sink_local.json \\
        -b synthetic:niah_single --bench-option target_tokens=256 -n 2 \\
        --max-new-tokens 8 --backend inline --out results
    sparse-attention-benchmark report results

Run: ``uv run python tutorials/py_examples/05_benchmark_matrix.py``
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sparse_attention_hub import (
    BenchmarkExecutor,
    BenchmarkSpec,
    LocalMaskerConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)


def report_command() -> list[str]:
    """The installed CLI next to this interpreter (or its module form)."""
    script = Path(sys.executable).parent / "sparse-attention-benchmark"
    if script.exists():
        return [str(script)]
    found = shutil.which("sparse-attention-benchmark")
    return [found] if found else [sys.executable, "-m", "sah_bench.cli"]


def main() -> None:
    configs = {
        "dense": None,  # the model's own attention
        "sink_local": ResearchAttentionConfig(
            masker_configs=[SinkMaskerConfig(sink_size=16), LocalMaskerConfig(window_size=64)]
        ).to_dict(),
    }
    benchmark = BenchmarkSpec(
        "synthetic", subsets=("niah_single",), options={"target_tokens": 256, "num_samples": 2}
    )
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results"
        executor = BenchmarkExecutor(
            out,
            backend="inline",  # this process; "local" = a worker per device, "ray" = a cluster
            max_requests=2,
            generation_kwargs={"max_new_tokens": 8},
            progress=False,
        )
        cells = executor.plan(["smollm2-135m"], configs, [benchmark])
        print(f"{len(cells)} cells: {[cell.key for cell in cells]}")
        results = executor.run_cells(cells)
        for result in results:
            metrics = result.metrics or {}
            print(
                f"{result.key}: {result.status}, score={metrics.get('score')}, "
                f"density={metrics.get('density')}"
            )
        assert all(r.status == "done" for r in results), [r.status for r in results]

        # Started again, the finished cells are skipped.
        again = executor.run_cells(cells)
        print(f"second run: {[r.status for r in again]}")

        report = subprocess.run(
            [*report_command(), "report", str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(report.stdout)
        written = sorted(p.name for p in (out / "report").iterdir())
        print(f"report files: {written}")


if __name__ == "__main__":
    main()
