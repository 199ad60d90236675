"""The config search on a local Ray (CPU) with a tiny random model: the only Ray-backed search
test module (Ray starts once for the module).

The adapter factory (test_search_units.make_tiny_adapter) runs inside the Ray workers,
imported by module name through ``PYTHONPATH`` (this folder and tests/adapters); it logs each
adapter it builds (process id and sparse config) to a file named in the model name, so a test
sees what really ran.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from sah_bench.search import Calibration, SearchSettings, read_trials, run_search
from sah_bench.search.methods import build_method
from sah_core.search_space import Choice, IntRange

# conftest.py keeps Ray off `uv run` runtime environments (RAY_ENABLE_UV_RUN_RUNTIME_ENV=0).
ray = pytest.importorskip("ray")
pytest.importorskip("optuna")

#: The tiny-model factory of the Ray-free module, imported by name inside the workers.
FACTORY = "test_search_units:make_tiny_adapter"
TARGET = 0.3
#: Short synthetic contexts (~400 tiny-tokenizer tokens), two requests per trial.
CALIBRATION = Calibration(
    benchmark="synthetic",
    subsets=("niah_single",),
    options={"target_tokens": 400, "num_samples": 2, "seed": 0},
    max_requests=2,
)


def _log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def local_ray() -> Any:
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here), str(here.parent / "adapters")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    yield ray
    ray.shutdown()


def _settings(tmp_path: Path, methods: list[str], **extra: Any) -> SearchSettings:
    return SearchSettings(
        model=f"tiny:{tmp_path / 'builds.jsonl'}",
        methods=methods,
        targets=[TARGET],
        out_dir=tmp_path / "search",
        trials=4,
        calibration=CALIBRATION,
        adapter_factory=FACTORY,
        # sink 4..64 + window 8..128 of ~390 keys: some points leave no budget at 0.3
        # (Quest pages of 4 or 8 keys: whole pages miss the budget by less than a page)
        spaces={
            "sink.sink_size": IntRange(4, 64),
            "local.window_size": IntRange(8, 128),
            **({"quest.page_size": Choice((4, 8))} if "quest" in methods else {}),
        },
        generation_kwargs={"max_new_tokens": 2},
        seed=3,
        **extra,
    )


def _interrupt_after(n: int, flag: Path) -> Any:
    """A Tune callback that sends this process SIGINT (Ctrl-C) once, after ``n`` finished
    trials (``flag`` records that it did, so a restored copy of it stays quiet)."""
    from ray.tune import Callback

    class Interrupt(Callback):
        seen = 0

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            Interrupt.seen += 1
            if Interrupt.seen >= n and not flag.exists():
                flag.write_text("interrupted")
                signal.raise_signal(signal.SIGINT)

    return Interrupt()


def test_killed_search_resumes_and_gives_valid_configs_at_the_target(
    local_ray: Any, tmp_path: Path
) -> None:
    # One search (Ray starts up once and the trials dominate the time): Ctrl-C after two
    # finished trials of the first experiment, then the same command resumes it.
    methods = ["oracle_top_k", "quest"]
    first = run_search(
        _settings(tmp_path, methods, callbacks=[_interrupt_after(2, tmp_path / "flag")])
    )
    assert first.interrupted
    done_before = {r["trial_id"] for r in read_trials(tmp_path / "search")}
    assert 2 <= len(done_before) < 8
    runs_before = len(_log(tmp_path / "builds.jsonl"))
    result = run_search(_settings(tmp_path, methods))
    assert not result.interrupted
    rows = read_trials(tmp_path / "search")
    assert len(rows) == 8 and {r["method"] for r in rows} == set(methods)
    assert done_before <= {r["trial_id"] for r in rows}
    # the trials finished before the interruption were not run again
    new_sparse = [b for b in _log(tmp_path / "builds.jsonl")[runs_before:] if b["config"]]
    assert len(new_sparse) <= 8 - len(done_before)
    for method in methods:
        best = tmp_path / "search" / "best" / f"{method}_0.3.json"
        config = json.loads(best.read_text())
        assert [m["type"] for m in config["masker_configs"]] == ["sink", "local", method]
        measured = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        top = min(measured, key=lambda r: r["score"])
        assert json.loads(top["sparse_config"]) == config
        assert abs(top["density"] - TARGET) <= 0.02, top
    # Every point that ran was valid, checked independently of the trial code: its sink and
    # window leave a budget at the target (and Quest's page fits it); pruned ones never ran.
    built = [b["config"] for b in _log(tmp_path / "builds.jsonl") if b["config"] is not None]
    ran = {json.dumps(c, sort_keys=True) for c in built}
    evaluated = {r["sparse_config"] for r in rows if r["status"] == "ok"}
    assert ran == evaluated
    for row in rows:
        fixed = row["p:sink.sink_size"] + row["p:local.window_size"]
        if row["status"] == "ok":
            assert fixed / row["key_len"] < TARGET
        else:
            assert row["status"] == "pruned" and row["reason"]
    assert any(r["status"] == "pruned" for r in rows)
    assert (tmp_path / "search" / "error_vs_density.png").stat().st_size > 0
    # One model-and-data load (dense build) per worker process and experiment, in each run.
    dense_builds = [b for b in _log(tmp_path / "builds.jsonl") if b["config"] is None]
    assert len(dense_builds) <= 2 * 2 * 2
    assert build_method("oracle_top_k").name == "oracle_top_k"
