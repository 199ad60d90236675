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


# -- issue 12: duplicates, collisions, damaged cells, file modes, categories -------------------
RECORDING = "recording_factory:make_recording_adapter"
SMALL = BenchmarkSpec("synthetic", ("niah_single",), {"num_samples": 2, "target_tokens": 150})


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_duplicated_matrix_entries_run_once(
    tmp_path: Path, fake_factory: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: cells planned twice, stored once, and the local result loop waited forever.
    executor = make(tmp_path, fake_factory, backend=backend)
    twice = BenchmarkSpec("synthetic", ("vt", "vt"), {"num_samples": 1, "target_tokens": 150})
    results = executor.run(["fake-oracle", "fake-oracle"], {"dense": None}, [twice, twice])
    assert [r.status for r in results] == ["done"]
    assert "more than once" in caplog.text


@pytest.mark.parametrize(
    ("first", "second"), [("x", "../../x"), ("a b", "a_b"), ("org/m", "org__m")]
)
def test_names_sharing_a_folder_are_refused_before_work(
    tmp_path: Path, fake_factory: str, first: str, second: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="share the result folder"):
        make(out, fake_factory).run(["fake-oracle"], {first: None, second: None}, [SMALL])
    with pytest.raises(ValueError, match="share the result folder"):
        make(out, fake_factory).run([first, second], {"dense": None}, [SMALL])
    assert not out.exists()


def test_dense_name_with_a_sparse_config_is_refused(tmp_path: Path, fake_factory: str) -> None:
    with pytest.raises(ValueError, match="reserved for dense"):
        make(tmp_path, fake_factory).plan(["m"], {"dense": {"keep": 1}}, [SMALL])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / "raw_results.parquet").write_bytes(b"PAR1"), "bytes"),
        (lambda d: (d / "metrics.json").write_text("{}"), "bytes"),
        (lambda d: (d / "raw_results.csv").unlink(), "missing"),
        (lambda d: (d / "micro_metrics.jsonl").write_text("x" * 10), "bytes"),
    ],
)
def test_damaged_complete_cell_is_redone_and_named(
    tmp_path: Path, fake_factory: str, damage: object, reason: str
) -> None:
    executor = make(tmp_path, fake_factory)
    first = executor.run(["fake-oracle"], {"dense": None}, [SMALL])
    cell = Path(first[0].cell_dir)
    before = pd.read_parquet(cell / "raw_results.parquet")
    damage(cell)  # type: ignore[operator]
    again = executor.run(["fake-oracle"], {"dense": None}, [SMALL])
    assert again[0].status == "done" and reason in (again[0].redone or "")
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert list(summary["redone_damaged"]) == [first[0].key]
    after = pd.read_parquet(cell / "raw_results.parquet")
    assert after["prediction"].tolist() == before["prediction"].tolist()
    # A third run trusts the rebuilt cell.
    assert [r.status for r in executor.run(["fake-oracle"], {"dense": None}, [SMALL])] == [
        "skipped"
    ]


def test_a_same_size_edit_is_caught_by_the_checksum(tmp_path: Path, fake_factory: str) -> None:
    executor = make(tmp_path, fake_factory)
    cell = Path(executor.run(["fake-oracle"], {"dense": None}, [SMALL])[0].cell_dir)
    text = (cell / "metrics.json").read_text()
    (cell / "metrics.json").write_text(text.replace('"score": 1.0', '"score": 0.0'))
    again = executor.run(["fake-oracle"], {"dense": None}, [SMALL])
    assert "checksum" in (again[0].redone or "")


def test_result_files_get_the_umask_mode(tmp_path: Path, fake_factory: str) -> None:
    import os

    old = os.umask(0o022)
    try:
        cell = Path(
            make(tmp_path, fake_factory).run(["fake-oracle"], {"dense": None}, [SMALL])[0].cell_dir
        )
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in cell.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_failures_are_categorised(tmp_path: Path, fake_factory: str) -> None:
    executor = make(tmp_path, fake_factory)
    (tmp_path / "empty").mkdir()  # exists (checked when planning) but holds no data
    missing = BenchmarkSpec("longbench", ("qasper",), {"data_path": str(tmp_path / "empty")})
    results = executor.run(["fake-unloadable", "fake-fail"], {"dense": None}, [SMALL])
    results += executor.run(["fake-oracle"], {"dense": None}, [missing])
    categories = {r.key.split(" | ")[0] + "/" + r.key.split(" | ")[2]: r.category for r in results}
    assert categories == {
        "fake-unloadable/synthetic_niah_single": "model_load",
        "fake-fail/synthetic_niah_single": "run",
        "fake-oracle/longbench_qasper": "data",
    }
    error = json.loads((tmp_path / "fake-oracle/dense/longbench_qasper/error.json").read_text())
    assert error["category"] == "data" and "empty" in error["error"]


def test_bad_sparse_config_is_a_config_error_not_a_load_error() -> None:
    from sah_bench.executor.errors import ConfigError
    from sah_bench.executor.factory import build_hf_adapter

    bad = {"type": "ResearchAttentionConfig", "masker_configs": [{"type": "NoSuchMaskerConfig"}]}
    with pytest.raises(ConfigError, match="NoSuchMaskerConfig"):
        build_hf_adapter("never-loaded", bad)


# -- issue 10: kwargs and devices reach the factory; configs of one model share contexts -------
def test_model_kwargs_device_and_request_kwargs_reach_the_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recording_factory import read_log

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("SAH_RECORD_LOG", str(log))
    executor = make(
        tmp_path / "out",
        RECORDING,
        devices=["cuda:1"],  # inline: placement only, the fake never touches CUDA
        model_kwargs={"dtype": "bfloat16"},
        request_kwargs={"max_context_length": 99, "truncation": "left"},
        generation_kwargs={"max_new_tokens": 5, "temperature": 0.0},
        safetensors_only=True,
    )
    executor.run(["rec-oracle"], {"dense": None}, [SMALL])
    entries = read_log(str(log))
    load = next(e for e in entries if e["event"] == "load")
    assert load["model_kwargs"] == {"dtype": "bfloat16"} and load["device"] == "cuda:1"
    assert load["safetensors_only"] is True
    request = next(e for e in entries if e["event"] == "request")
    assert request["request_kwargs"] == {"max_context_length": 99, "truncation": "left"}
    assert request["generation_kwargs"]["temperature"] == 0.0
    assert request["generation_kwargs"]["max_new_tokens"] <= 5


def test_model_kwargs_to_a_factory_without_them_fail_the_cell(
    tmp_path: Path, fake_factory: str
) -> None:
    executor = make(tmp_path, fake_factory, model_kwargs={"dtype": "float16"})
    result = executor.run(["fake-oracle"], {"dense": None}, [SMALL])[0]
    assert result.category == "config" and "model_kwargs" in (result.error or "")


def test_local_pool_pins_one_worker_per_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recording_factory import read_log

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("SAH_RECORD_LOG", str(log))
    executor = make(tmp_path / "out", RECORDING, backend="local", devices=["cuda:0", "1"])
    bench = BenchmarkSpec(
        "synthetic", ("niah_single", "vt"), {"num_samples": 1, "target_tokens": 150}
    )
    results = executor.run(["rec-oracle"], {"dense": None}, [bench])
    assert [r.status for r in results] == ["done", "done"]
    loads = [e for e in read_log(str(log)) if e["event"] == "load"]
    assert sorted(e["cuda_visible_devices"] for e in loads) == ["0", "1"]
    assert {e["device"] for e in loads} == {"cuda"}
    assert len({e["pid"] for e in loads}) == 2


def test_a_dead_worker_fails_its_cells_and_the_run_ends(tmp_path: Path) -> None:
    executor = make(tmp_path, RECORDING, backend="local", devices=["cpu"])
    results = executor.run(["rec-crash", "rec-oracle"], {"dense": None}, [SMALL])
    status = {r.key.split(" | ")[0]: (r.status, r.category) for r in results}
    assert status == {"rec-crash": ("failed", "run"), "rec-oracle": ("done", None)}
    assert "died" in next(r.error for r in results if r.status == "failed")  # type: ignore[operator]


def test_configs_of_one_model_run_request_major_and_share_one_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sah_adapters")
    from recording_factory import read_log

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("SAH_RECORD_LOG", str(log))
    bench = BenchmarkSpec("synthetic", ("niah_single",), {"num_samples": 3, "target_tokens": 150})
    configs = {"dense": None, "a": {"keep": 1}, "b": {"keep": 2}}
    make(tmp_path / "out", RECORDING).run(["rec-shared"], configs, [bench])
    requests = [e for e in read_log(str(log)) if e["event"] == "request"]
    contexts = [e["context_tail"] for e in requests]
    # Request-major: each context through the three configs back to back.
    assert len(contexts) == 9 and all(len(set(contexts[i : i + 3])) == 1 for i in (0, 3, 6))
    assert len(set(contexts)) == 3
    assert len({e["store"] for e in requests}) == 1 and requests[0]["store"] != id(None)
    # Without sharing, no store is attached.
    log.unlink()
    make(tmp_path / "out2", RECORDING, share_context=False).run(["rec-shared"], configs, [bench])
    assert {e["store"] for e in read_log(str(log)) if e["event"] == "request"} == {id(None)}


def test_records_say_where_the_prefill_time_went() -> None:
    from types import SimpleNamespace

    from sah_bench.executor.cell import _sharing_extras

    stats = SimpleNamespace(
        context_cache_hit=True, context_prefill_seconds=0.0, question_prefill_seconds=3.0
    )
    extras = _sharing_extras(SimpleNamespace(last_request_stats=stats), 6)  # type: ignore[arg-type]
    assert extras == {
        "context_cache_hit": True,
        "context_prefill_seconds": 0.0,
        "question_prefill_seconds": 0.5,  # per question, like the record's other timings
    }
    assert _sharing_extras(SimpleNamespace(), 2) == {}  # type: ignore[arg-type]
