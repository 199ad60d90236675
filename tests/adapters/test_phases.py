"""Phases: the research path acts only in the phases the config (or sparse_prefill) names."""

from __future__ import annotations

from typing import Any

import pytest
from adapter_testkit import CONTEXT, QUESTIONS, tiny_model

from sah_adapters import ContextCacheStore, ModelAdapterHF
from sah_core import ResearchAttentionConfig
from sah_core.maskers import LocalMaskerConfig, OracleTopKConfig, SinkMaskerConfig
from sah_protocol import Request

REQUEST = Request(CONTEXT, QUESTIONS[:2], answer_prefix=" Answer:")


def _query_lengths(adapter: ModelAdapterHF, **request_kwargs: Any) -> list[int]:
    research = adapter._research_attention
    seen: list[int] = []
    original = research.custom_attention

    def spy(module: Any, queries: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(int(queries.shape[2]))
        return original(module, queries, *args, **kwargs)

    research.custom_attention = spy
    try:
        adapter.process_request(REQUEST, {"max_new_tokens": 4}, request_kwargs or None)
    finally:
        research.custom_attention = original
    return seen


@pytest.mark.parametrize(
    ("phases", "sparse_prefill", "kinds"),
    [
        (("question", "decode"), False, {"question", "decode"}),
        (("decode",), False, {"decode"}),
        (("question",), False, {"question"}),
        (("question", "decode"), True, {"prefill", "question", "decode"}),
        (("prefill",), False, {"prefill"}),
    ],
)
def test_research_path_runs_in_named_phases(
    plain_tokenizer: Any, phases: tuple[str, ...], sparse_prefill: bool, kinds: set[str]
) -> None:
    config = ResearchAttentionConfig([SinkMaskerConfig(2), LocalMaskerConfig(4)], phases=phases)
    with ModelAdapterHF.from_model(tiny_model("llama"), plain_tokenizer, config) as adapter:
        extra = {"sparse_prefill": True} if sparse_prefill else {}
        lengths = _query_lengths(adapter, **extra)
        context = adapter.last_request_stats.context_tokens
    found = set()
    for q in lengths:
        found.add("prefill" if q == context else "decode" if q == 1 else "question")
    assert found == kinds


@pytest.mark.parametrize(
    "stack",
    [[OracleTopKConfig(heavy_size=1.0)], [LocalMaskerConfig(window_size=1.0)]],
    ids=["oracle_1.0", "local_all"],
)
def test_sparse_prefill_of_full_budget_equals_dense(plain_tokenizer: Any, stack: list) -> None:
    model = tiny_model("llama")
    with ModelAdapterHF.from_model(model, plain_tokenizer) as dense:
        dense.process_request(REQUEST, {"max_new_tokens": 8})
        expected = dense.last_request_stats.answer_token_ids
    config = ResearchAttentionConfig(stack)
    with ModelAdapterHF.from_model(model, plain_tokenizer, config) as sparse:
        sparse.process_request(REQUEST, {"max_new_tokens": 8}, {"sparse_prefill": True})
        assert sparse.last_request_stats.answer_token_ids == expected


def test_sparse_prefill_context_is_never_shared(plain_tokenizer: Any) -> None:
    model, store = tiny_model("llama"), ContextCacheStore()
    config = ResearchAttentionConfig([SinkMaskerConfig(2), LocalMaskerConfig(4)])
    with ModelAdapterHF.from_model(model, plain_tokenizer, config, context_cache=store) as a:
        a.process_request(REQUEST, {"max_new_tokens": 2})  # dense prefill: stored
        assert store.context_length is not None and store.misses == 1
        a.process_request(REQUEST, {"max_new_tokens": 2}, {"sparse_prefill": True})
        assert not a.last_request_stats.context_cache_hit
        assert (store.hits, store.misses) == (0, 1)  # neither looked up nor replaced
        a.process_request(REQUEST, {"max_new_tokens": 2})
        assert a.last_request_stats.context_cache_hit


def test_sparse_prefill_request_kwarg_checked(plain_tokenizer: Any) -> None:
    with ModelAdapterHF.from_model(tiny_model("llama"), plain_tokenizer) as adapter:
        with pytest.raises(ValueError, match=r"sparse_prefill'\]='yes' must be a bool"):
            adapter.process_request(REQUEST, None, {"sparse_prefill": "yes"})
        with pytest.raises(ValueError, match=r"sparse_prefill'\]=True is not allowed"):
            adapter.process_request(REQUEST, None, {"sparse_prefill": True})
