"""Reliability battery (issue 12): bad inputs through the CLI and the API, each with the error it
must give; SIGKILL at three moments of a run; a damaged result redone on rerun. Offline: a tiny
random Llama saved here (safetensors), fake adapters for the kill tests, HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from sah_bench import BenchmarkExecutor, BenchmarkSpec
from sah_bench.cli import FACTORY_ENV_VAR, app
from sah_bench.executor.storage import COMPLETE_MARKER, PROGRESS_LOG

TESTS = Path(__file__).resolve().parents[1]
SINK_LOCAL = {
    "type": "ResearchAttentionConfig",
    "masker_configs": [
        {"type": "SinkMaskerConfig", "sink_size": 4},
        {"type": "LocalMaskerConfig", "window_size": 4},
    ],
}
SMALL = ["--bench-option", "num_samples=1", "--bench-option", "target_tokens=120"]


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama in safetensors, the same as a pickle-only checkpoint, and one whose
    safetensors file is cut short."""
    from adapter_testkit import build_tokenizer, tiny_model

    root = tmp_path_factory.mktemp("models")
    model, tokenizer = tiny_model("llama"), build_tokenizer(chat_template=False)
    out = {}
    for name in ("tiny", "pickled", "corrupt"):
        folder = root / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out[name] = folder
    # A pickle-only checkpoint, as older hub repos ship (pytorch_model.bin).
    (out["pickled"] / "model.safetensors").unlink()
    torch.save(model.state_dict(), out["pickled"] / "pytorch_model.bin")
    weights = out["corrupt"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return out


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    monkeypatch.delenv(FACTORY_ENV_VAR, raising=False)  # the real HF adapter factory
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.output

    return invoke


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- the bad-input table --------------------------------------------------------------------
# Each case: (id, files {name: text} written into tmp_path, CLI args (``{tmp}`` and
# ``{tiny}``/``{pickled}``/``{corrupt}`` are filled in), expected exit code, expected text).
MASKER_BASE = json.dumps(
    {"type": "ResearchAttentionConfig", "masker_configs": [{"type": "MaskerConfig"}]}
)
NO_GPU = not torch.cuda.is_available()
RUN = ["run", "-m", "{tiny}", "-o", "{tmp}/out", "--backend", "inline", "--no-progress"]
LOAD = ["run", "-o", "{tmp}/out", "--backend", "inline", "--no-progress", "-b", "synthetic:vt"]

CLI_CASES: list[tuple[str, dict[str, str], list[str], int, str]] = [
    ("unknown benchmark", {}, [*RUN, "-b", "nope"], 2, "unknown benchmark 'nope'"),
    ("unknown subset", {}, [*RUN, "-b", "synthetic:nope"], 2, "unknown subset 'nope'"),
    ("unknown backend", {}, [*RUN, "--backend", "slurm"], 2, "backend 'slurm' is not known"),
    ("device gpu7", {}, [*RUN, "--device", "gpu7"], 2, "device 'gpu7' is not allowed"),
    ("bad dtype", {}, [*RUN, "--dtype", "float8"], 2, "dtype 'float8' is not allowed"),
    ("metric typo", {}, [*RUN, "--metric", "recall"], 2, "metric 'recall' is not allowed"),
    ("option no value", {}, [*RUN, "--bench-option", "oops"], 2, "use KEY=VALUE"),
    (
        "option of no benchmark",
        {},
        [*RUN, "-b", "mock", "--bench-option", "num_samples=2"],
        2,
        "no benchmark of this run accepts option 'num_samples'",
    ),
    (
        "scoped option unknown to that benchmark",
        {},
        [*RUN, "-b", "mock", "-b", "synthetic", "--bench-option", "mock.num_samples=2"],
        2,
        "benchmark 'mock' has no option(s) ['num_samples']",
    ),
    (
        "scoped option for a benchmark not in the run",
        {},
        [*RUN, "-b", "mock", "--bench-option", "longbench.data_path=x"],
        2,
        "benchmark 'longbench' is not in this run",
    ),
    ("max-requests 0", {}, [*RUN, "--max-requests", "0"], 2, "Invalid value"),
    ("config malformed", {"c.json": "{not json"}, [*RUN, "-c", "{tmp}/c.json"], 2, "malformed"),
    ("config missing", {}, [*RUN, "-c", "{tmp}/none.json"], 2, "does not exist"),
    ("config a list", {"c.json": "[1, 2]"}, [*RUN, "-c", "{tmp}/c.json"], 2, "got list"),
    (
        "unknown masker",
        {"c.json": json.dumps({**SINK_LOCAL, "masker_configs": [{"type": "NoSuchMaskerConfig"}]})},
        [*RUN, "-c", "{tmp}/c.json"],
        2,
        "NoSuchMaskerConfig",
    ),
    (
        "abstract MaskerConfig inside",
        {"c.json": MASKER_BASE},
        [*RUN, "-c", "{tmp}/c.json"],
        2,
        "masker_configs[0]['type']='MaskerConfig' is the abstract base",
    ),
    (
        "abstract MaskerConfig on top",
        {"c.json": json.dumps({"type": "MaskerConfig"})},
        [*RUN, "-c", "{tmp}/c.json"],
        2,
        "top-level 'type'='MaskerConfig' is not allowed",
    ),
    (
        "bad masker field value",
        {
            "c.json": json.dumps(
                {**SINK_LOCAL, "masker_configs": [{"type": "SinkMaskerConfig", "sink_size": -3}]}
            )
        },
        [*RUN, "-c", "{tmp}/c.json"],
        2,
        "sink_size",
    ),
    (
        "unknown masker field",
        {
            "c.json": json.dumps(
                {**SINK_LOCAL, "masker_configs": [{"type": "SinkMaskerConfig", "sinks": 3}]}
            )
        },
        [*RUN, "-c", "{tmp}/c.json"],
        2,
        "['sinks'] are not allowed",
    ),
    (
        "sparse config saved as dense.json",
        {"dense.json": json.dumps(SINK_LOCAL)},
        [*RUN, "-c", "{tmp}/dense.json"],
        2,
        "reserved for dense attention",
    ),
    (
        "two configs with one name",
        {"a.json": json.dumps(SINK_LOCAL), "sub/a.json": json.dumps(SINK_LOCAL)},
        [*RUN, "-c", "{tmp}/a.json", "-c", "{tmp}/sub/a.json"],
        2,
        "both named 'a'",
    ),
    (
        "x vs ../../x",
        {},
        [*RUN, "-m", "x", "-m", "../../x"],
        2,
        "share the result folder",
    ),
    ("a b vs a_b", {}, [*RUN, "-m", "a b", "-m", "a_b"], 2, "share the result folder"),
    ("org/m vs org__m", {}, [*RUN, "-m", "org/m", "-m", "org__m"], 2, "share the result folder"),
    (
        "unwritable out",
        {"blocker": "x"},
        [*RUN, "-o", "{tmp}/blocker/sub", *SMALL],
        2,
        "is not writable",
    ),
    ("run file unknown key", {"r.yaml": "modelz: [x]\n"}, ["run", "{tmp}/r.yaml"], 2, "modelz"),
    ("run file a list", {"r.yaml": "- a\n"}, ["run", "{tmp}/r.yaml"], 2, "must hold a mapping"),
    ("run file bad yaml", {"r.yaml": "a: [\n"}, ["run", "{tmp}/r.yaml"], 2, "malformed"),
    (
        "models: a string",
        {"r.yaml": "models: /path\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "key 'models' = '/path': Input should be a valid list",
    ),
    (
        "subsets: a string",
        {"r.yaml": "benchmarks: [{name: synthetic, subsets: vt}]\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "benchmarks[0].subsets='vt' must be a list",
    ),
    (
        "max_requests: '5'",
        {"r.yaml": "max_requests: '5'\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "key 'max_requests' = '5': Input should be a valid integer",
    ),
    (
        "devices: 1",
        {"r.yaml": "devices: 1\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "key 'devices' = 1: Input should be a valid list",
    ),
    (
        "devices: [gpu7]",
        {"r.yaml": "devices: [gpu7]\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "device 'gpu7' is not allowed",
    ),
    (
        "dtype: fp8",
        {"r.yaml": "dtype: fp8\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "key 'dtype' = 'fp8'",
    ),
    (
        "metrics: a string",
        {"r.yaml": "metrics: density\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "key 'metrics' = 'density'",
    ),
    (
        "model_kwargs: a list",
        {"r.yaml": "model_kwargs: [dtype]\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "key 'model_kwargs'",
    ),
    (
        "configs value a number",
        {"r.yaml": "configs: {x: 5}\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "configs['x']=5 is not allowed",
    ),
    (
        "benchmark entry unknown key",
        {"r.yaml": "benchmarks: [{name: synthetic, subset: [vt]}]\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "unknown key(s) ['subset']",
    ),
    (
        "benchmark option unknown",
        {"r.yaml": "benchmarks: [{name: mock, options: {nope: 1}}]\n"},
        ["run", "{tmp}/r.yaml"],
        2,
        "benchmark 'mock' has no option(s) ['nope']",
    ),
    (
        "generation max_new_tokens 0",
        {"r.yaml": "generation_kwargs: {max_new_tokens: 0}\n"},
        ["run", "{tmp}/r.yaml", "-m", "{tiny}"],
        2,
        "generation_kwargs['max_new_tokens']=0 must be an int >= 1",
    ),
    (
        "generation unknown key",
        {"r.yaml": "generation_kwargs: {temp: 1}\n"},
        ["run", "{tmp}/r.yaml", "-m", "{tiny}"],
        2,
        "unknown key(s) ['temp']",
    ),
    (
        "request truncation",
        {"r.yaml": "request_kwargs: {truncation: top}\n"},
        ["run", "{tmp}/r.yaml", "-m", "{tiny}"],
        2,
        "request_kwargs['truncation']='top' is not allowed",
    ),
    (
        "request batch_size '4'",
        {"r.yaml": "request_kwargs: {batch_size: '4'}\n"},
        ["run", "{tmp}/r.yaml", "-m", "{tiny}"],
        2,
        "request_kwargs['batch_size']='4' must be an int >= 1",
    ),
    (
        "nonexistent model path",
        {},
        [*LOAD, "-m", "{tmp}/no/such/model", *SMALL],
        2,
        "no such local folder",
    ),
    (
        "pickle checkpoint refused",
        {},
        [*LOAD, "-m", "{pickled}", *SMALL],
        2,
        "safetensors",
    ),
    (
        "corrupt safetensors",
        {},
        [*LOAD, "-m", "{corrupt}", *SMALL],
        2,
        "model_load error",
    ),
    (
        "malformed hub id",
        {},
        [*LOAD, "-m", "not a valid//id!!", *SMALL],
        2,
        "(and not a hub id)",
    ),
    (
        "hub id while offline",
        {},
        [*LOAD, "-m", "someorg/somemodel", *SMALL],
        2,
        "could not be loaded: OSError",
    ),
    ("report of a missing folder", {}, ["report", "{tmp}/none"], 2, "does not exist"),
    ("report format", {}, ["report", "{tmp}", "--format", "xml"], 2, "--format 'xml'"),
    ("list what", {}, ["list", "nope"], 2, "cannot list 'nope'"),
]
if NO_GPU:
    CLI_CASES.append(("cuda without a GPU", {}, [*RUN, "--device", "cuda"], 2, "needs a CUDA GPU"))
    CLI_CASES.append(
        (
            "cuda:1 in a run file",
            {"r.yaml": "devices: [cuda:1]\n"},
            ["run", "{tmp}/r.yaml"],
            2,
            "needs a CUDA GPU",
        )
    )


@pytest.mark.parametrize(
    ("files", "args", "code", "message"),
    [c[1:] for c in CLI_CASES],
    ids=[c[0] for c in CLI_CASES],
)
def test_cli_bad_input(
    cli: Callable[..., tuple[int, str]],
    models: dict[str, Path],
    tmp_path: Path,
    files: dict[str, str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    for name, text in files.items():
        _write(tmp_path / name, text)
    filled = [a.format(tmp=tmp_path, **models) for a in args]
    got, output = cli(*filled)
    assert got == code, output
    assert message in output, output
    assert "Traceback" not in output
    # Refused before any work, or (model loading) failed without a result.
    assert not list(tmp_path.rglob(COMPLETE_MARKER))


def test_the_battery_is_large_enough() -> None:
    assert len(CLI_CASES) + len(API_CASES) >= 40


# -- API bad inputs -------------------------------------------------------------------------
def _executor(tmp: Path, **kw: Any) -> BenchmarkExecutor:
    return BenchmarkExecutor(tmp, adapter_factory="sah_bench_fakes:make_fake_adapter", **kw)


def _plan(tmp: Path, models: Any, configs: Any, benches: Any) -> Any:
    return _executor(tmp).plan(models, configs, benches)


def _call_plan(**changes: Any) -> Any:
    from sah_core import CallPlan

    q, k, v = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    args: dict[str, Any] = {"queries": q, "keys": k, "values": v, **changes}
    return CallPlan.build(args.pop("queries"), args.pop("keys"), args.pop("values"), **args)


API_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("devices an int", lambda t: _executor(t, devices=1), "must be a non-empty list"),
    ("devices gpu7", lambda t: _executor(t, devices=["gpu7"]), "device 'gpu7' is not allowed"),
    ("devices twice", lambda t: _executor(t, devices=["cuda:0", 0]), "more than once"),
    ("max_requests str", lambda t: _executor(t, max_requests="5"), "max_requests='5'"),
    ("metrics typo", lambda t: _executor(t, micro_metrics=["recal"]), "metric 'recal'"),
    ("backend", lambda t: _executor(t, backend="slurm"), "backend 'slurm'"),
    (
        "callable factory on local",
        lambda t: BenchmarkExecutor(t, adapter_factory=print, backend="local"),  # type: ignore[arg-type]
        "importable 'module:function'",
    ),
    ("models a str", lambda t: _plan(t, "/path", {"dense": None}, ["mock"]), "models='/path'"),
    ("empty model name", lambda t: _plan(t, [""], {"dense": None}, ["mock"]), "non-empty str"),
    ("no configs", lambda t: _plan(t, ["m"], {}, ["mock"]), "at least one config"),
    ("dense is sparse", lambda t: _plan(t, ["m"], {"dense": {"k": 1}}, ["mock"]), "reserved"),
    ("no benchmarks", lambda t: _plan(t, ["m"], {"dense": None}, []), "at least one benchmark"),
    (
        "bad option",
        lambda t: _plan(t, ["m"], {"dense": None}, [BenchmarkSpec("mock", None, {"x": 1})]),
        "bad options",
    ),
    # Attention inputs, checked once per call in sah_core's CallPlan (helper H4).
    ("head size", lambda t: _call_plan(keys=torch.randn(1, 2, 5, 4)), "keys.shape[3]=4"),
    ("value length", lambda t: _call_plan(values=torch.randn(1, 2, 6, 8)), "values.shape[2]=6"),
    (
        "mask rows",
        lambda t: _call_plan(attention_mask=torch.zeros(1, 1, 7, 5)),
        "attention_mask.shape[2]=7",
    ),
    (
        "mask batch",
        lambda t: _call_plan(attention_mask=torch.zeros(3, 1, 3, 5)),
        "attention_mask.shape[0]=3",
    ),
    (
        "dtype mix",
        lambda t: _call_plan(queries=torch.randn(1, 4, 3, 8, dtype=torch.bfloat16)),
        "must share one dtype",
    ),
    ("Q > K", lambda t: _call_plan(queries=torch.randn(1, 4, 9, 8)), "Q <= K"),
    ("scaling", lambda t: _call_plan(scaling=float("nan")), "scaling=nan"),
    (
        "NaN input refused on request",
        lambda t: _call_plan(keys=torch.full((1, 2, 5, 8), float("nan")), raise_on_nonfinite=True),
        "NaN",
    ),
]


@pytest.mark.parametrize(
    ("build", "message"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_api_bad_input(tmp_path: Path, build: Callable[[Path], Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        build(tmp_path)
    assert message in str(info.value)


def test_trust_remote_code_warns(models: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    from sah_adapters.model_loading import warn_remote_code

    config = json.loads((models["tiny"] / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (models["tiny"].parent / "remote").mkdir(exist_ok=True)
    (models["tiny"].parent / "remote" / "config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING"):
        warn_remote_code(str(models["tiny"].parent / "remote"))
    assert "modeling_evil" in caplog.text


# -- a damaged result through the CLI on the tiny model --------------------------------------
def test_damaged_result_is_reported_then_redone(
    cli: Callable[..., tuple[int, str]], models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "run", "-m", str(models["tiny"]), "-b", "synthetic:vt", "-o", str(out),
        "--backend", "inline", "--no-progress", "--max-new-tokens", "2", *SMALL,
    ]  # fmt: skip
    code, output = cli(*args)
    assert code == 0 and "1 done" in output, output
    cell = next(out.rglob(COMPLETE_MARKER)).parent
    before = pd.read_parquet(cell / "raw_results.parquet")
    parquet = cell / "raw_results.parquet"
    parquet.write_bytes(parquet.read_bytes()[:50])
    code, output = cli("report", str(out))
    assert code == 2 and "raw_results.parquet" in output and str(cell) in output, output
    code, output = cli(*args)
    assert code == 0 and "1 done" in output and "redone" in output, output
    after = pd.read_parquet(parquet)
    assert after["prediction"].tolist() == before["prediction"].tolist()
    (cell / "metrics.json").write_text("{}")
    code, output = cli("report", str(out))
    assert code == 2 and "metrics.json" in output and "Traceback" not in output, output


# -- SIGKILL at three moments ---------------------------------------------------------------
KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    import sah_bench.executor.cell as cell
    from sah_bench import BenchmarkExecutor, BenchmarkSpec

    moment, out = sys.argv[1], sys.argv[2]
    calls = {"n": 0, "markers": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    append, marker = cell.append_progress, cell.write_complete_marker

    def append_then_maybe_die(*a, **k):
        append(*a, **k)
        calls["n"] += 1
        if moment == "mid-cell" and calls["n"] == 3:
            die()

    def marker_around(*a, **k):
        calls["markers"] += 1
        if moment == "before-marker" and calls["markers"] == 2:
            die()  # result files written, marker not
        marker(*a, **k)
        if moment == "after-marker" and calls["markers"] == 2:
            die()  # marker written, progress log not yet removed

    cell.append_progress = append_then_maybe_die
    if moment != "mid-cell":
        cell.write_complete_marker = marker_around

    if __name__ == "__main__":
        BenchmarkExecutor(
            out, adapter_factory="sah_bench_fakes:make_fake_adapter", progress=False
        ).run(
            ["fake-oracle"],
            {"dense": None, "keep1": {"keep": 1}},
            [BenchmarkSpec("synthetic", ("niah_single", "niah_multivalue"),
                           {"num_samples": 3, "target_tokens": 150})],
        )
    """
)


def _rows(out: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted(out.rglob("raw_results.parquet"))]
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["config", "subset", "request_id"]).reset_index(drop=True)


@pytest.mark.parametrize("moment", ["mid-cell", "before-marker", "after-marker"])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path: Path, moment: str) -> None:
    script = _write(tmp_path / "kill.py", KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(TESTS / "bench")}

    def run(name: str, when: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, str(script), when, str(tmp_path / name), str(TESTS / "bench")],
            env=env,
            timeout=300,
            check=False,
        )

    assert run("clean", "never").returncode == 0
    killed = run("killed", moment)
    assert killed.returncode == -signal.SIGKILL
    assert run("killed", "never").returncode == 0
    clean, resumed = _rows(tmp_path / "clean"), _rows(tmp_path / "killed")
    columns = ["config", "subset", "request_id", "prediction", "score"]
    assert resumed[columns].equals(clean[columns])
    assert not resumed.duplicated(["config", "subset", "request_id"]).any()
    assert len(list((tmp_path / "killed").rglob(COMPLETE_MARKER))) == 4
    assert not list((tmp_path / "killed").rglob(PROGRESS_LOG))
