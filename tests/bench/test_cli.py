"""The CLI through typer's runner, with fake adapters injected (no model is loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sah_bench.cli import FACTORY_ENV_VAR, app
from sah_bench.executor.storage import COMPLETE_MARKER

SINK_LOCAL = {
    "type": "ResearchAttentionConfig",
    "masker_configs": [
        {"type": "SinkMaskerConfig", "sink_size": 4},
        {"type": "LocalMaskerConfig", "window_size": 4},
    ],
}
SMALL = ["--bench-option", "num_samples=2", "--bench-option", "target_tokens=150"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, fake_factory: str) -> CliRunner:
    monkeypatch.setenv(FACTORY_ENV_VAR, fake_factory)
    return CliRunner()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sink_local.json"
    path.write_text(json.dumps(SINK_LOCAL))
    return path


def run(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_run_with_flags_then_rerun_skips(
    runner: CliRunner, tmp_path: Path, config_file: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "-m",
        "fake-oracle",
        "-c",
        "dense",
        "-c",
        str(config_file),
        "-b",
        "synthetic:niah_single",
        "-o",
        str(out),
        "--backend",
        "inline",
        "--no-progress",
        *SMALL,
    ]
    code, output = run(runner, *args)
    assert code == 0, output
    assert "2 cells: 2 done" in output
    assert (out / "fake-oracle/sink_local/synthetic_niah_single" / COMPLETE_MARKER).is_file()
    code, output = run(runner, *args)
    assert code == 0 and "2 skipped" in output


def test_run_file_yaml(runner: CliRunner, tmp_path: Path, config_file: Path) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        "models: [fake-oracle]\n"
        f"configs: {{dense: null, sl: {config_file.name}}}\n"
        "benchmarks:\n"
        "  - {name: synthetic, subsets: [vt], options: {num_samples: 1, target_tokens: 150}}\n"
        "  - mock\n"
        f"out: {tmp_path / 'out'}\n"
        "backend: local\n"
        "max_requests: 2\n"
    )
    code, output = run(runner, "run", str(run_file), "--no-progress")
    assert code == 0, output
    assert "4 cells: 4 done" in output
    metrics = json.loads(
        (tmp_path / "out/fake-oracle/sl/mock_reading_comprehension" / "metrics.json").read_text()
    )
    assert metrics["n_requests"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-b", "nope"], "unknown benchmark 'nope'"),
        (["-b", "synthetic:nope"], "unknown subset 'nope'"),
        (["--backend", "slurm"], "backend 'slurm'"),
    ],
)
def test_bad_flags_exit_2(
    runner: CliRunner, tmp_path: Path, extra: list[str], message: str
) -> None:
    code, output = run(runner, "run", "-m", "fake-oracle", "-o", str(tmp_path), *extra)
    assert code == 2
    assert message in output and output.count("error:") == 1


def test_bad_config_files_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, output = run(
        runner, "run", "-m", "fake-oracle", "-c", str(broken), "-o", str(tmp_path / "o")
    )
    assert code == 2 and "malformed" in output and "broken.json" in output
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        json.dumps(
            {"type": "ResearchAttentionConfig", "masker_configs": [{"type": "NoSuchMaskerConfig"}]}
        )
    )
    code, output = run(
        runner, "run", "-m", "fake-oracle", "-c", str(unknown), "-o", str(tmp_path / "o")
    )
    assert code == 2 and "NoSuchMaskerConfig" in output
    code, output = run(runner, "run", "-c", str(tmp_path / "missing.json"))
    assert code == 2 and "does not exist" in output
    bad_run = tmp_path / "run.yaml"
    bad_run.write_text("modelz: [x]\n")
    code, output = run(runner, "run", str(bad_run))
    assert code == 2 and "unknown key" in output


def test_unwritable_out_dir_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, output = run(
        runner,
        "run",
        "-m",
        "fake-oracle",
        "-o",
        str(blocker / "sub"),
        "--backend",
        "inline",
        *SMALL,
    )
    assert code == 2 and "not writable" in output


def test_unloadable_model_exits_2_and_keeps_earlier_results(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    base = [
        "run",
        "-b",
        "synthetic:niah_single",
        "-o",
        str(out),
        "--backend",
        "inline",
        "--no-progress",
        *SMALL,
    ]
    assert run(runner, *base, "-m", "fake-oracle")[0] == 0
    before = (out / "fake-oracle/dense/synthetic_niah_single/raw_results.parquet").read_bytes()
    code, output = run(runner, *base, "-m", "fake-oracle", "-m", "fake-unloadable")
    assert code == 2
    assert "fake-unloadable" in output and "could not be loaded" in output
    after = (out / "fake-oracle/dense/synthetic_niah_single/raw_results.parquet").read_bytes()
    assert after == before


def test_failing_cells_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    code, output = run(
        runner,
        "run",
        "-m",
        "fake-fail",
        "-b",
        "mock",
        "-o",
        str(tmp_path),
        "--backend",
        "inline",
        "--no-progress",
    )
    assert code == 1 and "fake model failure" in output


def test_list(runner: CliRunner) -> None:
    code, output = run(runner, "list", "benchmarks")
    assert code == 0 and "longbench (29 subsets)" in output and "synthetic" in output
    code, output = run(runner, "list", "maskers")
    assert code == 0 and "oracle_top_k" in output and "quest" in output
    code, output = run(runner, "list", "models")
    assert code == 0 and "smollm2-135m" in output
    assert run(runner, "list", "nope")[0] == 2


def test_report(runner: CliRunner, tmp_path: Path, config_file: Path) -> None:
    out = tmp_path / "out"
    assert (
        run(
            runner,
            "run",
            "-m",
            "fake-oracle",
            "-c",
            "dense",
            "-c",
            str(config_file),
            "-b",
            "synthetic:niah_single,niah_multivalue",
            "-o",
            str(out),
            "--backend",
            "inline",
            "--no-progress",
            *SMALL,
        )[0]
        == 0
    )
    code, output = run(runner, "report", str(out))
    assert code == 0, output
    assert "| model | config | score | density |" in output
    for name in ("leaderboard.md", "leaderboard.csv", "pareto.png", "per_layer_density.png"):
        assert (out / "report" / name).is_file()
    assert (out / "report/pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, output = run(runner, "report", str(out), "--format", "csv")
    assert code == 0 and output.startswith("model,config,score,density")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(runner, "report", str(empty))[0] == 2
    assert run(runner, "report", str(tmp_path / "missing"))[0] == 2


def test_demo_with_a_fake_model(runner: CliRunner, tmp_path: Path) -> None:
    code, output = run(
        runner, "demo", "--out", str(tmp_path / "demo"), "--target-tokens", "200", "--no-progress"
    )
    assert code == 0, output
    for name in ("dense", "sink_local", "oracle_topk_10pct", "quest_10pct", "adaptive_sampling"):
        assert name in output
    assert (tmp_path / "demo/report/pareto.png").is_file()


# -- issue 10: options reach the adapter and the benchmarks -------------------------------
RECORDING = "recording_factory:make_recording_adapter"


def test_run_file_kwargs_and_dtype_reach_the_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recording_factory import read_log

    monkeypatch.setenv(FACTORY_ENV_VAR, RECORDING)
    monkeypatch.setenv("SAH_RECORD_LOG", str(tmp_path / "log.jsonl"))
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        "models: [rec-oracle]\n"
        "benchmarks:\n"
        "  - {name: synthetic, subsets: [vt], options: {num_samples: 1, target_tokens: 150}}\n"
        "  - {name: mock, subsets: [reading_comprehension]}\n"
        "model_kwargs: {attn_implementation: eager, dtype: float32}\n"
        "request_kwargs: {max_context_length: 4000, truncation: middle, batch_size: 2}\n"
        "generation_kwargs: {max_new_tokens: 7, seed: 3}\n"
        "metrics: [density, output_error, mass_recall]\n"
        f"out: {tmp_path / 'out'}\n"
        "backend: inline\n"
    )
    code, output = run(CliRunner(), "run", str(run_file), "--dtype", "bfloat16", "--no-progress")
    assert code == 0, output
    entries = read_log(str(tmp_path / "log.jsonl"))
    loads = [e for e in entries if e["event"] == "load"]
    assert loads and all(
        e["model_kwargs"] == {"attn_implementation": "eager", "dtype": "bfloat16"}
        and e["safetensors_only"] is True
        and e["device"] == "cpu"
        for e in loads
    )
    requests = [e for e in entries if e["event"] == "request"]
    assert all(
        e["request_kwargs"] == {"max_context_length": 4000, "truncation": "middle", "batch_size": 2}
        and e["generation_kwargs"]["seed"] == 3
        and e["generation_kwargs"]["max_new_tokens"] <= 7
        for e in requests
    )
    spec = json.loads((tmp_path / "out/rec-oracle/dense/synthetic_vt/config.json").read_text())
    assert spec["micro_metrics"] == ["density", "output_error", "attention_mass_recall"]
    assert spec["benchmark_options"] == {"num_samples": 1, "target_tokens": 150}
    mock = json.loads(
        (tmp_path / "out/rec-oracle/dense/mock_reading_comprehension/config.json").read_text()
    )
    assert mock["benchmark_options"] == {}  # the synthetic options did not leak into mock


def test_bench_options_go_only_where_they_belong(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run(
        runner, "run", "-m", "fake-oracle", "-b", "synthetic:vt", "-b", "mock",
        "-o", str(out), "--backend", "inline", "--no-progress", *SMALL,
        "--bench-option", "synthetic.seed=5", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0, output
    synth = json.loads((out / "fake-oracle/dense/synthetic_vt/config.json").read_text())
    mock = json.loads(
        (out / "fake-oracle/dense/mock_reading_comprehension/config.json").read_text()
    )
    assert synth["benchmark_options"] == {
        "num_samples": 2, "target_tokens": 150, "seed": 5, "data_dir": str(tmp_path)
    }  # fmt: skip
    assert mock["benchmark_options"] == {"data_dir": str(tmp_path)}


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message of a machine without CUDA"
)
def test_device_cuda_without_a_gpu_exits_2_at_once(runner: CliRunner, tmp_path: Path) -> None:
    code, output = run(runner, "run", "-m", "fake-oracle", "-o", str(tmp_path / "o"), "-d", "cuda")
    assert code == 2 and "needs a CUDA GPU" in output and "--device cpu" in output
    assert not (tmp_path / "o").exists()


def test_report_names_a_damaged_cell_and_keeps_the_others(
    runner: CliRunner, tmp_path: Path, config_file: Path
) -> None:
    out = tmp_path / "out"
    args = ["run", "-m", "fake-oracle", "-c", "dense", "-c", str(config_file),
            "-b", "synthetic:niah_single", "-o", str(out), "--backend", "inline",
            "--no-progress", *SMALL]  # fmt: skip
    assert run(runner, *args)[0] == 0
    damaged = out / "fake-oracle/sink_local/synthetic_niah_single"
    (damaged / "metrics.json").write_text("{}")
    code, output = run(runner, "report", str(out))
    assert code == 1 and "unreadable cell" in output and str(damaged) in output
    assert "| fake-oracle | dense |" in output and "sink_local" not in output.split("unreadable")[0]
    assert "Unreadable cells" in (out / "report/leaderboard.md").read_text()
