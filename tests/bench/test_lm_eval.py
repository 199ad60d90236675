"""The lm-eval backend: model ``sah`` against plain HF log-likelihoods, and the CLI offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

import torch
from adapter_testkit import build_tokenizer, real_sparse_config, tiny_model

TASK_DIR = Path(__file__).resolve().parent / "lm_eval_task"
_TOKENIZER: list[Any] = []


def _tokenizer() -> Any:
    if not _TOKENIZER:
        _TOKENIZER.append(build_tokenizer(chat_template=False))
    return _TOKENIZER[0]


def tiny_adapter(model_name: str, sparse_config: dict[str, Any] | None, **_: Any) -> Any:
    """Adapter factory of these tests (``test_lm_eval:tiny_adapter``): the tiny random Llama."""
    from sah_adapters import ModelAdapterHF
    from sah_core import ResearchAttentionConfig

    config = None if sparse_config is None else ResearchAttentionConfig.from_dict(sparse_config)
    return ModelAdapterHF.from_model(tiny_model("llama"), _tokenizer(), config, model_name)


def _instances(kind: str, args: list[tuple[Any, ...]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance(kind, {}, a, i, ("t", i, 1)) for i, a in enumerate(args)]


PAIRS = [
    ("The quick brown fox", " jumps over the lazy dog."),
    ("The quick brown fox", " is"),  # same context: one prefill, a batch of two
    ("The quick brown fox", " 42, 5678"),
    ("Paris is the capital of", " France."),
    ("", "A needle hides in a haystack"),  # empty context: lm-eval's prefix token
]


def _plain_hf(model: Any, ids: list[int], start: int) -> tuple[float, bool]:
    """log p(ids[start:] | ids[:start]) from one full forward of the plain HF model."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[start - 1 : -1], dim=-1)
    target = torch.tensor(ids[start:])
    total = float(logprobs.gather(1, target[:, None]).sum())
    return total, bool((logits[start - 1 : -1].argmax(-1) == target).all())


@pytest.fixture(scope="module")
def dense_lm() -> Any:
    from sah_bench.lm_eval import SahLM

    lm = SahLM(adapter=tiny_adapter("tiny", None), batch_size=2)
    yield lm
    lm.adapter.close()


def test_sah_is_registered_on_import() -> None:
    from lm_eval.api.registry import get_model

    from sah_bench.lm_eval import SahLM

    assert get_model("sah") is SahLM


def test_dense_loglikelihood_equals_plain_hf(dense_lm: Any) -> None:
    results = dense_lm.loglikelihood(_instances("loglikelihood", PAIRS))
    model = tiny_model("llama")
    tokenizer = _tokenizer()
    for (context, continuation), (logprob, greedy) in zip(PAIRS, results, strict=True):
        if context:
            whole = tokenizer(context + continuation)["input_ids"]
            start = len(tokenizer(context)["input_ids"])
        else:
            whole = [
                tokenizer.bos_token_id,
                *tokenizer(continuation, add_special_tokens=False)["input_ids"],
            ]
            start = 1
        expected, expected_greedy = _plain_hf(model, whole, start)
        assert logprob == pytest.approx(expected, abs=1e-4)
        assert greedy == expected_greedy


def test_dense_rolling_equals_lm_eval_hf_backend(dense_lm: Any) -> None:
    from lm_eval.models.huggingface import HFLM

    text = "The quick brown fox jumps over the lazy dog. Paris is the capital of France. " * 4
    reference = HFLM(pretrained=tiny_model("llama"), tokenizer=_tokenizer(), batch_size=1)
    reference._max_length = dense_lm._max_length = 48  # several windows
    try:
        requests = _instances("loglikelihood_rolling", [(text,)])
        ours = dense_lm.loglikelihood_rolling(requests)
        theirs = reference.loglikelihood_rolling(requests)
    finally:
        dense_lm._max_length = 512
    assert ours[0] == pytest.approx(theirs[0], abs=1e-4 * len(text))
    assert ours[0] == pytest.approx(theirs[0], rel=1e-6)


def test_shared_context_is_prefilled_once(dense_lm: Any) -> None:
    model = tiny_model("llama")
    widths: list[int] = []
    handle = model.model.embed_tokens.register_forward_hook(
        lambda _m, args, _out: widths.append(args[0].shape[1])
    )
    try:
        dense_lm.loglikelihood(_instances("loglikelihood", PAIRS[:3]))
    finally:
        handle.remove()
    context = len(_tokenizer()(PAIRS[0][0])["input_ids"])
    # One prefill of the context, then batches of two continuations and one.
    assert widths.count(context) == 1 and widths[0] == context
    assert len(widths) == 3


def test_sparse_scoring_is_batch_and_feed_invariant(tmp_path: Path) -> None:
    from sah_bench.lm_eval import SahLM

    config = real_sparse_config()
    requests = _instances("loglikelihood", PAIRS[:4])
    scores = {}
    with tiny_adapter("tiny", None) as adapter:
        adapter.set_sparse_attention_config(config)
        for batch, feed in ((1, "block"), (3, "token")):
            lm = SahLM(adapter=adapter, batch_size=batch, question_feed=feed)
            with lm.recording(tmp_path / f"{batch}{feed}"):
                scores[(batch, feed)] = [s for s, _ in lm.loglikelihood(requests)]
        adapter.set_sparse_attention_config(None)
        dense = [s for s, _ in SahLM(adapter=adapter).loglikelihood(requests)]
    # Three continuations of one context in one padded batch, one token per forward, score
    # what each scores alone in one block.
    assert scores[(3, "token")] == pytest.approx(scores[(1, "block")], abs=1e-4)
    # Sink 2 + local 4 + top-4 of ~10-20 keys: the continuations really ran sparse.
    assert max(abs(a - b) for a, b in zip(scores[(1, "block")], dense, strict=True)) > 1e-3
    lines = (tmp_path / "1block" / "micro_metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and {r["request_type"] for r in records} == {"loglikelihood"}
    assert {r["task"] for r in records} == {"t"}
    assert all(0 < r["density"] < 1 for r in records)


def test_cli_runs_local_tasks_and_writes_cells(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sah_bench.cli import app
    from sah_bench.report import collect_cells

    config = tmp_path / "sink_local_topk.json"
    config.write_text(json.dumps(real_sparse_config().to_dict()))
    out = tmp_path / "results"
    args = [
        "lm-eval",
        "--model",
        "tiny",
        "--sparse-config",
        str(config),
        "--tasks",
        "sah_tiny_mc,sah_tiny_gen",
        "--tasks",
        "sah_tiny_ppl",
        "--include-path",
        str(TASK_DIR),
        "--no-builtin-tasks",
        "--batch-size",
        "3",
        "--out",
        str(out),
        "--adapter-factory",
        "test_lm_eval:tiny_adapter",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cells = {c["subset"]: c for c in collect_cells(out)}
    assert set(cells) == {"sah_tiny_mc", "sah_tiny_gen", "sah_tiny_ppl"}
    for task, cell in cells.items():
        assert cell["benchmark"] == "lm_eval" and cell["config"] == "sink_local_topk"
        assert 0 < cell["density"] < 1, task
        assert cell["per_layer_density"].keys() == {"0", "1"}
        assert cell["n_requests"] == 3
    assert cells["sah_tiny_mc"]["score_metric"] == "acc,none"
    assert 0 <= cells["sah_tiny_mc"]["score"] <= 1
    assert cells["sah_tiny_gen"]["score_metric"] == "exact_match,none"
    assert cells["sah_tiny_ppl"]["lm_eval"]["word_perplexity,none"] > 1
    own = json.loads((Path(cells["sah_tiny_gen"]["cell_dir"]) / "lm_eval_results.json").read_text())
    assert own["configs"]["output_type"] == "generate_until"
    assert "sah_tiny_mc" in result.output and "density" in result.output


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sah_bench.cli import app

    base = ["lm-eval", "--include-path", str(TASK_DIR), "--no-builtin-tasks", "--adapter-factory"]
    base += ["test_lm_eval:tiny_adapter", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*base, "--tasks", "no_such_task"])
    assert result.exit_code == 2
    assert "unknown lm-eval task(s) ['no_such_task']" in result.output
    result = CliRunner().invoke(app, [*base, "--tasks", "sah_tiny_mc", "-c", "missing.json"])
    assert result.exit_code == 2 and "missing.json" in result.output


def test_scoring_refuses_an_eviction_stack() -> None:
    from sah_bench.lm_eval import SahLM
    from sah_core import ResearchAttentionConfig
    from sah_core.eviction.streaming_llm import StreamingLLMConfig

    config = ResearchAttentionConfig(masker_configs=[StreamingLLMConfig(budget=8)])
    with tiny_adapter("tiny", config.to_dict()) as adapter:
        lm = SahLM(adapter=adapter)
        with pytest.raises(ValueError, match="KV eviction StreamingLLMConfig"):
            lm.loglikelihood(_instances("loglikelihood", PAIRS[:1]))
