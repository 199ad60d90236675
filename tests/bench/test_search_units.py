"""The config search without Ray: methods and validity, objective, one trial on a tiny random
model, outputs, the Pareto front per method and the CLI's checks.

``make_tiny_adapter`` is also the adapter factory of the Ray-backed module (test_search_ray),
imported there by module name inside the Ray workers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sah_bench.cli import FACTORY_ENV_VAR, app
from sah_bench.pareto import fronts, method_of
from sah_bench.run_config import configs_in_dir, load_sparse_config
from sah_bench.search import (
    INVALID_SCORE,
    Calibration,
    Objective,
    TrialPayload,
    build_method,
    evaluate_point,
    parse_domain,
    read_trials,
    write_outputs,
)
from sah_bench.search.methods import format_target
from sah_core import search_space as sp

FACTORY = "test_search_units:make_tiny_adapter"
#: Short synthetic contexts (~400 tiny-tokenizer tokens), two requests.
CALIBRATION = Calibration(
    benchmark="synthetic",
    subsets=("niah_single",),
    options={"target_tokens": 400, "num_samples": 2, "seed": 0},
    max_requests=2,
)
_TOKENIZER: list[Any] = []


def make_tiny_adapter(model_name: str, sparse_config: dict[str, Any] | None) -> Any:
    """A tiny random llama; ``model_name`` is ``tiny:<log file>`` and every build appends one
    JSON line (process id, sparse config) there, so a test sees what really ran."""
    from adapter_testkit import build_tokenizer, tiny_model

    from sah_adapters import ModelAdapterHF
    from sah_core import ResearchAttentionConfig

    log = model_name.split(":", 1)[1]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "config": sparse_config}) + "\n")
    if not _TOKENIZER:
        _TOKENIZER.append(build_tokenizer(False))
    config = None if sparse_config is None else ResearchAttentionConfig.from_dict(sparse_config)
    return ModelAdapterHF.from_model(
        tiny_model("llama"), _TOKENIZER[0], sparse_attention_config=config, model_name="tiny"
    )


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- methods


def test_stacks_are_sink_local_then_the_method() -> None:
    made = build_method("quest").materialize(
        {
            "sink.sink_size": 10,
            "local.window_size": 20,
            "quest.page_size": 8,
            "quest.label_bits": 8,
        },
        target=0.2,
        key_len=300,
    )
    assert made.valid, made.reason
    maskers = made.config["masker_configs"]
    assert [m["type"] for m in maskers] == ["sink", "local", "quest"]
    # the budget is what the target leaves: 0.2 - 30 / 300
    assert maskers[2]["heavy_size"] == pytest.approx(0.1)
    assert maskers[2]["page_size"] == 8 and maskers[2]["label_bits"] == 8
    assert build_method("dense").materialize({}, 0.1, 100).config == {
        "type": "ResearchAttentionConfig",
        "masker_configs": [],
    }


def test_invalid_points_say_why() -> None:
    oracle = build_method("oracle_top_k")
    full = oracle.materialize({"sink.sink_size": 40, "local.window_size": 40}, 0.2, 300)
    assert not full.valid and "no budget is left" in full.reason
    quest = build_method("quest").materialize(
        {"sink.sink_size": 4, "local.window_size": 8, "quest.page_size": 64, "quest.label_bits": 4},
        0.1,
        300,
    )
    assert not quest.valid and "page_size=64" in quest.reason
    pq = build_method("pq_cache").materialize(
        {
            "sink.sink_size": 4,
            "local.window_size": 8,
            "pq_cache.pq_group_factor": 8,
            "pq_cache.pq_bits": 4,
        },
        0.3,
        300,
        head_dim=12,
    )
    assert not pq.valid and "does not divide the head size 12" in pq.reason
    # vAttention: its top-k share plus its base-sample share may not exceed the budget
    vatt = build_method("vattention_oracle")
    assert set(vatt.searched) >= {"oracle_top_k.heavy_size", "adaptive_sampling.epsilon"}
    point = {
        "sink.sink_size": 4,
        "local.window_size": 8,
        "oracle_top_k.heavy_size": 0.8,
        "adaptive_sampling.base_rate_sampling": 0.4,
        "adaptive_sampling.epsilon": 0.1,
        "adaptive_sampling.delta": 0.1,
    }
    assert "add up to 1.200" in vatt.materialize(point, 0.3, 300).reason
    point["adaptive_sampling.base_rate_sampling"] = 0.1
    ok = vatt.materialize(point, 0.3, 300)
    sample = ok.config["masker_configs"][3]
    assert sample["init_offset"] == 4 and sample["local_offset"] == 8  # outside sink + window


def test_pinned_fields_and_replaced_domains() -> None:
    method = build_method(
        "quest",
        fixed={"sink.sink_size": 16},
        spaces={"quest.page_size": parse_domain("quest.page_size", [4, 8])},
    )
    assert "sink.sink_size" not in method.searched
    assert method.searched["quest.page_size"] == sp.Choice((4, 8))
    assert parse_domain("x", {"low": 1, "high": 9, "log": True}) == sp.IntRange(1, 9, True)
    assert parse_domain("x", {"low": 0.1, "high": 0.5}) == sp.FloatRange(0.1, 0.5)
    with pytest.raises(ValueError, match="has no field 'nope'"):
        build_method("quest", fixed={"quest.nope": 1})
    with pytest.raises(ValueError, match="method 'nope' is not allowed"):
        build_method("nope")
    with pytest.raises(ValueError, match="hat_weight_file"):
        build_method("hash_attention")
    with_files = build_method(
        "hash_attention", fixed={"hash_attention.hat_weight_file": "w_{hat_bits}.safetensors"}
    )
    assert "hash_attention.hat_bits" in with_files.searched
    one_file = build_method("hash_attention", fixed={"hash_attention.hat_weight_file": "w.st"})
    assert "hash_attention.hat_bits" not in one_file.searched
    assert format_target(0.05) == "0.05" and format_target(0.1) == "0.1"


# --------------------------------------------------------------------------- objective


def test_score_is_error_plus_penalty_over_the_target() -> None:
    measured = {"density": 0.25, "output_error": 0.1, "attention_mass_recall": 0.9, "accuracy": 0.5}
    assert Objective().score(measured, 0.2) == pytest.approx(0.1 + 10 * 0.05)
    assert Objective().score(measured, 0.3) == pytest.approx(0.1)  # under the target: no penalty
    recall = Objective.for_kind("recall", density_penalty=2.0)
    assert recall.score(measured, 0.2) == pytest.approx(0.1 + 2 * 0.05)
    assert Objective.for_kind("accuracy").score(measured, 0.25) == pytest.approx(0.5)
    assert Objective.for_kind("accuracy").micro_metrics == ("density",)
    with pytest.raises(ValueError, match="at least one"):
        Objective(0, 0, 0)
    with pytest.raises(ValueError, match="density_penalty=-1"):
        Objective(density_penalty=-1)


# --------------------------------------------------------------------------- one trial


def _payload(tmp_path: Path, method: str, target: float) -> TrialPayload:
    return TrialPayload(
        method=method,
        target=target,
        model=f"tiny:{tmp_path / 'builds.jsonl'}",
        adapter_factory=FACTORY,
        calibration=CALIBRATION,
        generation_kwargs={"max_new_tokens": 2},
    )


def test_a_valid_point_runs_and_lands_on_the_target(tmp_path: Path) -> None:
    payload = _payload(tmp_path, "oracle_top_k", 0.3)
    row = evaluate_point(payload, {"sink.sink_size": 4, "local.window_size": 16})
    assert row["valid"] and row["reason"] is None
    assert abs(row["density"] - 0.3) <= 0.02, row
    assert 0.0 <= row["output_error"] < 1.0
    assert row["n_questions"] == 2
    assert row["score"] == pytest.approx(row["output_error"] + 10 * max(0.0, row["density"] - 0.3))
    builds = read_log(tmp_path / "builds.jsonl")
    assert [b["config"] is None for b in builds] == [True, False]  # data load, then the trial
    assert json.loads(row["sparse_config"]) == builds[1]["config"]


def test_an_invalid_point_is_never_run(tmp_path: Path) -> None:
    payload = _payload(tmp_path, "oracle_top_k", 0.1)
    row = evaluate_point(payload, {"sink.sink_size": 24, "local.window_size": 48})
    assert not row["valid"] and "no budget is left" in row["reason"]
    assert row["score"] == INVALID_SCORE and row["density"] is None
    assert all(b["config"] is None for b in read_log(tmp_path / "builds.jsonl"))


def test_optuna_backend_search_resumes_after_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Ray-free backend: same TPE, trials in this process; killed after two trials, the
    rerun runs only the missing one."""
    from sah_bench.search import SearchSettings, run_search
    from sah_bench.search import runner as search_runner

    settings = SearchSettings(
        model=f"tiny:{tmp_path / 'builds.jsonl'}",
        methods=["oracle_top_k"],
        targets=[0.3],
        out_dir=tmp_path / "search",
        trials=3,
        calibration=Calibration("synthetic", ("niah_single",), CALIBRATION.options, 1),
        adapter_factory=FACTORY,
        spaces={"sink.sink_size": sp.IntRange(4, 8), "local.window_size": sp.IntRange(8, 16)},
        generation_kwargs={"max_new_tokens": 1},
        backend="optuna",
    )
    real = search_runner.evaluate_point
    calls: list[dict[str, Any]] = []

    def killed_on_the_third(payload: Any, point: Any) -> Any:
        calls.append(dict(point))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(payload, point)

    monkeypatch.setattr(search_runner, "evaluate_point", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_search(settings)
    monkeypatch.setattr(search_runner, "evaluate_point", real)
    before = len(read_log(tmp_path / "builds.jsonl"))
    result = run_search(settings)
    assert not result.interrupted and len(result.rows) == 3
    assert all(r["status"] == "ok" and r["density"] is not None for r in result.rows)
    new = [b for b in read_log(tmp_path / "builds.jsonl")[before:] if b["config"] is not None]
    assert len(new) == 1  # only the trial the kill cut off
    best = json.loads((tmp_path / "search" / "best" / "oracle_top_k_0.3.json").read_text())
    assert [m["type"] for m in best["masker_configs"]] == ["sink", "local", "oracle_top_k"]


# --------------------------------------------------------------------------- outputs


def _row(method: str, score: float, density: float, status: str = "ok", **extra: Any) -> Any:
    config = build_method(method).materialize(
        {"sink.sink_size": 4, "local.window_size": 8, "quest.page_size": 8, "quest.label_bits": 8},
        0.3,
        200,
    )
    return {
        "method": method,
        "target": 0.3,
        "valid": status != "pruned",
        "status": status,
        "score": score,
        "density": density,
        "output_error": score,
        "sparse_config": json.dumps(config.config),
        "p:sink.sink_size": 4,
        **extra,
    }


def test_outputs_best_files_are_ordinary_sparse_configs(tmp_path: Path) -> None:
    rows = [
        _row("oracle_top_k", 0.30, 0.31),
        _row("oracle_top_k", 0.10, 0.30, trial_id="b"),
        _row("oracle_top_k", 0.01, 0.3, status="error"),
        {**_row("oracle_top_k", INVALID_SCORE, 0.0, status="pruned"), "sparse_config": None},
        _row("quest", 0.2, 0.29),
    ]
    paths = write_outputs(rows, tmp_path, ["dense", "oracle_top_k", "quest"])
    assert sorted(p.name for p in paths["best"].iterdir()) == [
        "dense.json",
        "oracle_top_k_0.3.json",
        "quest_0.3.json",
    ]
    summary = json.loads((tmp_path / "best.json").read_text())
    oracle = next(s for s in summary if s["method"] == "oracle_top_k")
    assert oracle["score"] == 0.10 and oracle["trial_id"] == "b"
    assert len(read_trials(tmp_path)) == 5
    assert paths["plot"].stat().st_size > 0
    files = configs_in_dir(paths["best"])
    names = [load_sparse_config(f)[0] for f in files]
    assert names == ["dense", "oracle_top_k_0.3", "quest_0.3"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        configs_in_dir(tmp_path / "empty")


def test_pareto_front_per_method() -> None:
    assert method_of("quest_0.05") == ("quest", 0.05)
    assert method_of("dense") == ("dense", None)
    rows = [
        {"model": "m", "config": "quest_0.05", "score": 0.5, "density": 0.06},
        {"model": "m", "config": "quest_0.1", "score": 0.4, "density": 0.11},  # dominated
        {"model": "m", "config": "quest_0.2", "score": 0.7, "density": 0.10},
        {"model": "m", "config": "oracle_top_k_0.1", "score": 0.9, "density": 0.1},
        {"model": "m", "config": "dense", "score": 1.0, "density": 1.0},
    ]
    found = fronts(rows)
    assert [r["config"] for r in found[("m", "quest")]] == ["quest_0.05", "quest_0.2"]
    assert [r["config"] for r in found[("m", "oracle_top_k")]] == ["oracle_top_k_0.1"]
    assert set(found) == {("m", "quest"), ("m", "oracle_top_k"), ("m", "dense")}


# --------------------------------------------------------------------------- CLI


def test_cli_checks_everything_before_ray(tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["--method", "nope", "--target", "0.1"], "method 'nope' is not allowed"),
        (["--method", "quest", "--target", "1.5"], "target density 1.5"),
        (["--method", "quest", "--target", "0.1", "--set", "quest.nope=1"], "no field 'nope'"),
        (["--method", "quest", "--target", "0.1", "--set", "magic_pig.lsh_l=8"], "magic_pig"),
        (["--method", "quest", "--target", "0.1", "--space", "quest.page_size=7"], "page_size"),
        (["--method", "quest", "--target", "0.1", "--objective", "speed"], "objective 'speed'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["search", "--out", str(tmp_path / "s"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "s").exists()
    listed = runner.invoke(app, ["search", "--list-methods"])
    assert listed.exit_code == 0 and "quest: sink.sink_size" in listed.output
    assert "vattention_pq_cache:" in listed.output


def test_run_configs_dir_runs_every_best_config(
    tmp_path: Path, fake_factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FACTORY_ENV_VAR, fake_factory)
    rows = [_row("oracle_top_k", 0.1, 0.3), _row("quest", 0.2, 0.29)]
    write_outputs(rows, tmp_path / "search", ["dense", "oracle_top_k", "quest"])
    args = ["run", "-m", "fake-oracle", "--configs-dir", str(tmp_path / "search" / "best")]
    args += ["-b", "synthetic:niah_single", "--bench-option", "num_samples=1", "-o"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "out"), "--backend", "inline"])
    assert result.exit_code == 0, result.output
    cells = sorted(p.name for p in (tmp_path / "out" / "fake-oracle").iterdir())
    assert cells == ["dense", "oracle_top_k_0.3", "quest_0.3"]
    missing = CliRunner().invoke(app, ["run", "--configs-dir", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "is not a folder" in missing.output


def test_call_geometry_counts_allowed_pairs_row_by_row() -> None:
    from sah_bench.search.geometry import CallGeometry, PromptShape

    # context 10, question 4, 3 new tokens: one causal question call (rows see 11..14 of 14
    # keys), then decode calls over 15 and 16 keys (the first new token needs no call)
    geometry = CallGeometry.of_prompts([PromptShape(10, 4, 3)])
    question_allowed = [10 + r + 1 for r in range(4)]
    mean_allowed = sum(question_allowed) / 4
    assert geometry.calls == ((14, mean_allowed), (15, 15), (16, 16))
    assert geometry.key_scale == pytest.approx((14 / mean_allowed + 1 + 1) / 3)
    assert geometry.fixed_density(3) == pytest.approx((3 / mean_allowed + 3 / 15 + 3 / 16) / 3)
    # a sparse prefill adds the causal context call (rows see 1..10 keys)
    prefill = CallGeometry.of_prompts([PromptShape(10, 4, 1)], sparse_prefill=True)
    assert prefill.calls == ((10, 5.5), (14, mean_allowed))
    with pytest.raises(ValueError, match="no attention call"):
        CallGeometry.of_prompts([])
