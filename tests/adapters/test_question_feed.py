"""request_kwargs["question_feed"]: one question token per forward equals the block feed."""

from __future__ import annotations

from typing import Any

import pytest
from adapter_testkit import CONTEXT, QUESTIONS, real_sparse_config, tiny_model

from sah_adapters import ModelAdapterHF
from sah_adapters.generation_settings import RequestSettings
from sah_protocol import Request


@pytest.mark.parametrize(
    ("sparse", "batch_size"),
    [(False, 2), (True, 1), (True, 2)],
    ids=["dense-2", "sparse-1", "sparse-2"],
)
def test_token_feed_equals_block_feed(chat_tokenizer: Any, sparse: bool, batch_size: int) -> None:
    model = tiny_model("llama")
    widths: list[int] = []  # tokens of every forward, read at the embedding (test-only hook)
    handle = model.model.embed_tokens.register_forward_hook(
        lambda _m, args, _out: widths.append(args[0].shape[1])
    )
    config = real_sparse_config() if sparse else None
    answers: dict[str, list[list[int]]] = {}
    forwards: dict[str, list[int]] = {}
    try:
        with ModelAdapterHF.from_model(model, chat_tokenizer, config) as adapter:
            for feed in ("block", "token"):
                widths.clear()
                adapter.process_request(
                    Request(CONTEXT, QUESTIONS),
                    {"max_new_tokens": 4},
                    {"batch_size": batch_size, "question_feed": feed},
                )
                stats = adapter.last_request_stats
                answers[feed] = stats.answer_token_ids
                forwards[feed] = list(widths)
    finally:
        handle.remove()
    assert answers["token"] == answers["block"]
    assert all(len(a) > 0 for a in answers["block"])
    # The token feed really ran one token per forward after the context prefill.
    assert forwards["token"][0] == stats.context_tokens
    assert set(forwards["token"][1:]) == {1}
    assert max(forwards["block"][1:]) > 1
    # Same question tokens fed: the block widths (padded to the batch's longest question)
    # are the number of one-token question steps of the token feed.
    steps_block = sum(forwards["block"][1:])
    assert len(forwards["token"]) - 1 == steps_block


def test_question_feed_is_validated() -> None:
    assert RequestSettings.from_kwargs(None).question_feed == "block"
    assert RequestSettings.from_kwargs({"question_feed": "token"}).question_feed == "token"
    with pytest.raises(ValueError, match=r"question_feed.*'tokens'.*\('block', 'token'\)"):
        RequestSettings.from_kwargs({"question_feed": "tokens"})
