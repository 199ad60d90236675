"""BenchmarkExecutor with fake adapters: layout, failures, resume, fingerprints, local pool."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sah_bench import BenchmarkExecutor, BenchmarkSpec
from sah_bench.executor.storage import (
    COMPLETE_MARKER,
    PROGRESS_LOG,
    append_progress,
    read_progress,
)

SYNTH = BenchmarkSpec(
    "synthetic", ("niah_single", "niah_multivalue"), {"num_samples": 3, "target_tokens": 200}
)
CONFIGS = {"dense": None, "keep1": {"keep": 1, "density": 0.5}}


def make(out: Path, factory: str, **kw: object) -> BenchmarkExecutor:
    return BenchmarkExecutor(out, adapter_factory=factory, progress=False, **kw)  # type: ignore[arg-type]


def test_results_layout_and_scores(tmp_path: Path, fake_factory: str) -> None:
    results = make(tmp_path, fake_factory).run(["fake-oracle"], CONFIGS, [SYNTH])
    assert [r.status for r in results] == ["done"] * 4
    cell = tmp_path / "fake-oracle" / "keep1" / "synthetic_niah_multivalue"
    for name in (
        "raw_results.parquet",
        "raw_results.csv",
        "metrics.json",
        "config.json",
        "micro_metrics.jsonl",
        COMPLETE_MARKER,
    ):
        assert (cell / name).is_file(), name
    assert not (cell / PROGRESS_LOG).exists()
    frame = pd.read_parquet(cell / "raw_results.parquet")
    assert len(frame) == 3 and frame["request_id"].is_unique
    # keep=1 answers one of the four values: string_match_all = 1/4 on every row.
    assert frame["score"].tolist() == [0.25] * 3
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["score"] == pytest.approx(0.25)
    # Fake densities: layer l reports density * (1 + l) / 2 -> 0.25 and 0.5, mean 0.375.
    assert metrics["density"] == pytest.approx(0.375)
    assert metrics["per_layer_density"] == {"0": pytest.approx(0.25), "1": pytest.approx(0.5)}
    dense = json.loads(
        (tmp_path / "fake-oracle/dense/synthetic_niah_single/metrics.json").read_text()
    )
    assert dense["score"] == 1.0
    config = json.loads((cell / "config.json").read_text())
    assert config["sparse_config"] == CONFIGS["keep1"] and config["subset"] == "niah_multivalue"
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert summary["counts"]["done"] == 4


def test_failing_cells_are_recorded_and_others_go_on(tmp_path: Path, fake_factory: str) -> None:
    results = make(tmp_path, fake_factory).run(
        ["fake-fail", "fake-oracle", "fake-unloadable"], {"dense": None}, [SYNTH]
    )
    by_model = {r.key.split(" | ")[0]: r for r in results}
    assert by_model["fake-oracle"].status == "done"
    assert by_model["fake-fail"].status == "failed"
    assert "fake model failure" in (by_model["fake-fail"].error or "")
    assert "ModelLoadError" in (by_model["fake-unloadable"].error or "")
    error = json.loads((tmp_path / "fake-fail/dense/synthetic_niah_single/error.json").read_text())
    assert "RuntimeError" in error["error"]
    assert not (tmp_path / "fake-fail/dense/synthetic_niah_single" / COMPLETE_MARKER).exists()


def test_rerun_skips_complete_cells_and_redoes_changed_ones(
    tmp_path: Path, fake_factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.log"
    loads = tmp_path / "loads.log"
    monkeypatch.setenv("SAH_FAKE_CALL_LOG", str(log))
    monkeypatch.setenv("SAH_FAKE_FACTORY_LOG", str(loads))
    make(tmp_path / "out", fake_factory).run(["fake-oracle"], CONFIGS, [SYNTH])
    first = len(log.read_text().splitlines())
    assert first == 4 * 3
    loads_first = len(loads.read_text().splitlines())
    assert loads_first >= 1
    again = make(tmp_path / "out", fake_factory).run(["fake-oracle"], CONFIGS, [SYNTH])
    assert {r.status for r in again} == {"skipped"}
    assert len(log.read_text().splitlines()) == first
    # Complete cells are skipped before their adapter is built: no model load on resume.
    assert len(loads.read_text().splitlines()) == loads_first
    # A different max_requests is a different cell spec: its cells are redone.
    changed = make(tmp_path / "out", fake_factory, max_requests=2).run(
        ["fake-oracle"], CONFIGS, [SYNTH]
    )
    assert {r.status for r in changed} == {"done"}
    frame = pd.read_parquet(
        tmp_path / "out/fake-oracle/dense/synthetic_niah_single" / "raw_results.parquet"
    )
    assert len(frame) == 2


def test_partial_cell_resumes_from_its_progress_log(
    tmp_path: Path, fake_factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = make(tmp_path / "out", fake_factory)
    cells = executor.plan(["fake-oracle"], {"dense": None}, [SYNTH])[:1]
    reference = make(tmp_path / "ref", fake_factory).run_cells(cells)[0]
    ref_dir = Path(reference.cell_dir)
    # A run stopped after one request, then a torn (half-written) line as a kill leaves it.
    cell_dir = cells[0].cell_dir(tmp_path / "out")
    fingerprint = cells[0].fingerprint()
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SAH_FAKE_CALL_LOG", str(log))
    # Answer exactly one request through a run that stops after it.
    from sah_bench.executor import cell as cell_module

    def stop(_: str) -> None:
        raise KeyboardInterrupt

    result = cell_module.run_cell(
        cells[0], tmp_path / "out", _fake("fake-oracle"), progress=False, on_request_done=stop
    )
    assert result.status == "interrupted"
    assert len(read_progress(cell_dir, fingerprint)) == 1
    with (cell_dir / PROGRESS_LOG).open("a") as fh:
        fh.write('{"fingerprint": "' + fingerprint + '", "request_id": "000')  # torn line
    resumed = executor.run_cells(cells)[0]
    assert resumed.status == "done"
    assert len(log.read_text().splitlines()) == 3  # 1 before the "kill" + 2 after
    got = pd.read_parquet(cell_dir / "raw_results.parquet")
    want = pd.read_parquet(ref_dir / "raw_results.parquet")
    cols = ["request_id", "prediction", "score"]
    pd.testing.assert_frame_equal(got[cols], want[cols])


def _fake(model: str):  # type: ignore[no-untyped-def]
    from sah_bench_fakes import make_fake_adapter

    return make_fake_adapter(model, None)


def test_progress_log_drops_torn_and_duplicate_lines(tmp_path: Path) -> None:
    append_progress(tmp_path, {"fingerprint": "f", "request_id": "a", "records": []})
    append_progress(tmp_path, {"fingerprint": "f", "request_id": "a", "records": []})
    append_progress(tmp_path, {"fingerprint": "old", "request_id": "b", "records": []})
    with (tmp_path / PROGRESS_LOG).open("a") as fh:
        fh.write('{"fingerprint": "f", "requ')
    entries = read_progress(tmp_path, "f")
    assert [e["request_id"] for e in entries] == ["a"]
    # The log was rewritten clean, so the next append starts on its own line.
    append_progress(tmp_path, {"fingerprint": "f", "request_id": "c", "records": []})
    assert [e["request_id"] for e in read_progress(tmp_path, "f")] == ["a", "c"]


def test_plan_validates_input(tmp_path: Path, fake_factory: str) -> None:
    executor = make(tmp_path, fake_factory)
    with pytest.raises(ValueError, match="unknown benchmark"):
        executor.plan(["m"], {"dense": None}, ["nope"])
    with pytest.raises(ValueError, match="unknown subset"):
        executor.plan(["m"], {"dense": None}, ["synthetic:nope"])
    with pytest.raises(ValueError, match="backend"):
        make(tmp_path, fake_factory, backend="slurm")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        make(blocker / "sub", fake_factory).run(["fake-oracle"], {"dense": None}, [SYNTH])


def test_local_backend_runs_cells_in_worker_processes(tmp_path: Path, fake_factory: str) -> None:
    executor = make(tmp_path, fake_factory, backend="local", devices=["cpu", "cpu"])
    results = executor.run(["fake-oracle", "fake-fail"], CONFIGS, [SYNTH])
    statuses = {r.key: r.status for r in results}
    assert len(statuses) == 8
    assert all(s == "done" for k, s in statuses.items() if k.startswith("fake-oracle"))
    assert all(s == "failed" for k, s in statuses.items() if k.startswith("fake-fail"))
    metrics = json.loads(
        (tmp_path / "fake-oracle/dense/synthetic_niah_multivalue/metrics.json").read_text()
    )
    assert metrics["score"] == 1.0
