"""The Ray backend on a local Ray instance (CPU only); skipped when ray is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sah_bench import BenchmarkExecutor, BenchmarkSpec

ray = pytest.importorskip("ray")
# Local Ray clusters run in their own pytest process (noxfile), never beside another one.
pytestmark = pytest.mark.ray


def test_ray_backend_runs_each_cell_as_a_task(
    tmp_path: Path, fake_factory: str, tests_dir: Path
) -> None:
    # conftest.py keeps Ray off `uv run` runtime environments (RAY_ENABLE_UV_RUN_RUNTIME_ENV=0).
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(tests_dir)}},
    )
    try:
        executor = BenchmarkExecutor(
            tmp_path, adapter_factory=fake_factory, backend="ray", progress=False
        )
        bench = BenchmarkSpec(
            "synthetic", ("niah_single",), {"num_samples": 2, "target_tokens": 150}
        )
        results = executor.run(["fake-oracle", "fake-fail"], {"dense": None}, [bench])
        status = {r.key.split(" | ")[0]: (r.status, r.category) for r in results}
        assert status == {"fake-oracle": ("done", None), "fake-fail": ("failed", "run")}
        metrics = json.loads(
            (tmp_path / "fake-oracle/dense/synthetic_niah_single/metrics.json").read_text()
        )
        assert metrics["score"] == 1.0
        # A rerun finds the cell complete and skips it.
        again = executor.run(["fake-oracle"], {"dense": None}, [bench])
        assert [r.status for r in again] == ["skipped"]
    finally:
        ray.shutdown()
