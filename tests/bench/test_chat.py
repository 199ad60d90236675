"""``sparse-attention-benchmark chat``: KV cache across turns, density, commands, --compare."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from adapter_testkit import build_tokenizer, real_sparse_config, tiny_model
from typer.testing import CliRunner

from sah_bench.cli import app

# The test kit's template with each message's role, so earlier turns render as they were seen.
ROLE_TEMPLATE = (
    "<bos>{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_TOKENIZER: list[Any] = []
FACTORY = "test_chat:tiny_chat_adapter"


def _tokenizer() -> Any:
    if not _TOKENIZER:
        tokenizer = build_tokenizer(chat_template=True)
        tokenizer.chat_template = ROLE_TEMPLATE
        _TOKENIZER.append(tokenizer)
    return _TOKENIZER[0]


def tiny_chat_adapter(model_name: str, sparse_config: dict[str, Any] | None, **_: Any) -> Any:
    from sah_adapters import ModelAdapterHF
    from sah_core import ResearchAttentionConfig

    config = None if sparse_config is None else ResearchAttentionConfig.from_dict(sparse_config)
    return ModelAdapterHF.from_model(tiny_model("llama"), _tokenizer(), config, model_name)


MESSAGES = ["Paris is the capital of France.", "What is the magic number?", "Tell me now."]


def test_turns_reuse_the_kv_cache_and_match_a_fresh_prompt() -> None:
    """Turn 3 feeds only its new tokens, yet answers as transformers' generate on the whole
    conversation (the model's own reply tokens, not their re-tokenized text)."""
    from sah_bench.chat import ChatSession

    model = tiny_model("llama")
    widths: list[int] = []
    handle = model.model.embed_tokens.register_forward_hook(
        lambda _m, args, _out: widths.append(args[0].shape[1])
    )
    try:
        with tiny_chat_adapter("tiny", None) as adapter:
            session = ChatSession(adapter, max_new_tokens=5)
            results = []
            for message in MESSAGES:
                before = len(session.cached_ids)
                widths.clear()
                results.append(session.send(message))
            last_widths = list(widths)
    finally:
        handle.remove()
    assert session.rebuilds == 0
    prompt = session.cached_ids[: before + results[2].new_tokens]
    assert results[2].new_tokens == last_widths[0] < len(prompt) // 2
    # The fed tokens are the template text of the new turn, after the previous reply.
    rendered_tail = "<|end|><|user|>" + MESSAGES[2] + "<|end|><|assistant|>"
    assert _tokenizer().decode(prompt[before:]).endswith(rendered_tail)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=5,
            do_sample=False,
            eos_token_id=2,
            pad_token_id=0,
        )
    expected = out[0, len(prompt) :].tolist()
    expected = expected[: expected.index(2)] if 2 in expected else expected
    assert session.cached_ids[len(prompt) :] + session._unfed == expected
    assert results[2].text == _tokenizer().decode(expected, skip_special_tokens=True)
    assert all(r.density is None for r in results)  # dense: no sparse attention call


def test_cli_chat_compare_commands_and_density(tmp_path: Path) -> None:
    config = tmp_path / "sparse.json"
    config.write_text(json.dumps(real_sparse_config().to_dict()))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    lines = [
        MESSAGES[0],
        MESSAGES[1],
        "/reset",
        f"/config {bad}",
        "/config dense",
        MESSAGES[2],
        "/nope",
        "/quit",
        "never read",
    ]
    args = ["chat", "-m", "tiny", "-c", str(config), "--compare", "--max-new-tokens", "4"]
    result = CliRunner().invoke(app, [*args, "--adapter-factory", FACTORY], input="\n".join(lines))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "chatting with tiny (dense, sparse)" in out
    dense = re.findall(
        r"\[density ([0-9.]+) \(dense\) \| (\d+) tokens .*?, ([0-9.]+) tokens/s", out
    )
    sparse = re.findall(r"\[density (0\.[0-9]+) \| (\d+) tokens .*?, ([0-9.]+) tokens/s", out)
    assert len(dense) == 4  # every dense reply, and the sparse side's after /config dense
    assert len(sparse) == 2  # the sparse side's replies before it
    assert all(0 < float(d) < 1 for d, _, _ in sparse)
    assert all(float(rate) > 0 for _, n, rate in dense + sparse if int(n) > 0)
    assert "(conversation reset)" in out and "KV cache will be rebuilt" in out
    assert "error:" in out and "bad.json" in out
    assert "unknown command '/nope'" in out
    fed = [int(n) for n in re.findall(r"\| (\d+) prompt tokens fed\]", out)]
    text = _tokenizer().apply_chat_template(
        [{"role": "user", "content": MESSAGES[2]}], tokenize=False, add_generation_prompt=True
    )
    fresh = len(_tokenizer()(text, add_special_tokens=False)["input_ids"])
    # Turn 2 fed only its own tokens; after /reset both sides start over with the whole prompt.
    assert fed[0] == fed[1] and fed[2] < fed[0] + 4 and fed[2] == fed[3]
    assert fed[4] == fed[5] == fresh


def test_cli_chat_bad_input_exits_2() -> None:
    args = ["chat", "-m", "tiny", "--compare", "--adapter-factory", FACTORY]
    result = CliRunner().invoke(app, args, input="/quit\n")
    assert result.exit_code == 2 and "--compare needs a sparse config" in result.output
    args = ["chat", "-m", "tiny", "-c", "missing.json", "--adapter-factory", FACTORY]
    result = CliRunner().invoke(app, args, input="/quit\n")
    assert result.exit_code == 2 and "missing.json" in result.output
