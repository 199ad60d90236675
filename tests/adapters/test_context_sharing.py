"""The context KV is rolled back (not copied) after each batch, and shared across adapters."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_testkit import CONTEXT, QUESTIONS, real_sparse_config, tiny_model

from sah_adapters import ContextCacheStore, ContextCheckpoint, ModelAdapterHF
from sah_adapters.transformers_compat import cache_argument_name, new_dynamic_cache
from sah_protocol import Request

GEN = {"max_new_tokens": 6}


def _prefill(model: Any, ids: list[int]) -> Any:
    cache = new_dynamic_cache(model.config)
    tensor = torch.tensor([ids])
    with torch.no_grad():
        model(input_ids=tensor, use_cache=True, **{cache_argument_name(model): cache})
    return cache


def _layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


@pytest.mark.parametrize("family", ["llama", "mistral", "gemma3"])
@pytest.mark.parametrize("batch", [1, 3])
def test_restore_gives_back_the_exact_context_state(family: str, batch: int) -> None:
    model = tiny_model(family)
    context = list(range(5, 45))  # 40 tokens: past the sliding window (8) of mistral/gemma3
    cache = _prefill(model, context)
    expected = _layer_tensors(cache)
    counters = [getattr(layer, "cumulative_length", None) for layer in cache.layers]
    checkpoint = ContextCheckpoint.mark(cache, len(context))
    # A question batch: repeat rows, then extend by more tokens than the window.
    if batch > 1:
        cache.batch_repeat_interleave(batch)
    with torch.no_grad():
        for token in range(50, 62):
            ids = torch.full((batch, 1), token)
            model(input_ids=ids, use_cache=True, **{cache_argument_name(model): cache})
    checkpoint.restore(cache)
    for layer, (keys, values), counter in zip(cache.layers, expected, counters, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
        assert getattr(layer, "cumulative_length", None) == counter
    # Continuing from the restored cache equals continuing from a fresh prefill.
    fresh = _prefill(model, context)
    step = torch.tensor([[7]])
    with torch.no_grad():
        a = model(input_ids=step, use_cache=True, **{cache_argument_name(model): cache}).logits
        b = model(input_ids=step, use_cache=True, **{cache_argument_name(model): fresh}).logits
    assert torch.equal(a, b)


def _count_context_prefills(model: Any) -> tuple[list[int], Any]:
    seen: list[int] = []  # tokens of every forward pass, read at the embedding (test-only hook)
    handle = model.get_input_embeddings().register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].shape[1])
    )
    return seen, handle


def _sparse_configs() -> list[Any]:
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers import LocalMaskerConfig, SinkMaskerConfig

    return [
        real_sparse_config(),
        ResearchAttentionConfig(
            masker_configs=[SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=6)]
        ),
        None,
    ]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_shared_store_prefills_once_and_changes_no_token(family: str, chat_tokenizer: Any) -> None:
    model = tiny_model(family)
    requests = [Request(CONTEXT, QUESTIONS), Request(CONTEXT[:200], QUESTIONS[0])]
    configs = _sparse_configs()
    unshared = []
    for config in configs:
        with ModelAdapterHF.from_model(model, chat_tokenizer, config) as adapter:
            unshared.append(
                [adapter.process_request(r, GEN, {"batch_size": 2}).responses for r in requests]
            )
    store = ContextCacheStore()
    adapters = [
        ModelAdapterHF.from_model(model, chat_tokenizer, config, context_cache=store)
        for config in configs
    ]
    seen, handle = _count_context_prefills(model)
    try:
        shared: list[list[Any]] = [[] for _ in configs]
        hits, context_tokens = [], set()
        for request in requests:  # request-major, as the benchmark executor runs a matrix
            for i, adapter in enumerate(adapters):
                shared[i].append(adapter.process_request(request, GEN, {"batch_size": 2}))
                hits.append(adapter.last_request_stats.context_cache_hit)
                context_tokens.add(adapter.last_request_stats.context_tokens)
    finally:
        handle.remove()
        for adapter in adapters:
            adapter.close()
    assert [[r.responses for r in row] for row in shared] == unshared
    assert len(context_tokens) == 2 and min(context_tokens) > 40
    # One context prefill per distinct context; every other adapter hit the store.
    assert sorted(n for n in seen if n in context_tokens) == sorted(context_tokens)
    assert hits == [False, True, True, False, True, True]
    assert store.hits == 4 and store.misses == 2


def test_set_sparse_attention_config_reuses_the_context(chat_tokenizer: Any) -> None:
    model = tiny_model("qwen3")
    request = Request(CONTEXT, QUESTIONS[:2])
    expected = []
    for config in _sparse_configs():
        with ModelAdapterHF.from_model(model, chat_tokenizer, config) as adapter:
            expected.append(adapter.process_request(request, GEN).responses)
    store = ContextCacheStore()
    with ModelAdapterHF.from_model(model, chat_tokenizer, context_cache=store) as adapter:
        got = []
        for config in _sparse_configs():
            adapter.set_sparse_attention_config(config)
            got.append(adapter.process_request(request, GEN).responses)
    assert got == expected
    assert store.misses == 1 and store.hits == 2


def test_a_stack_acting_in_the_prefill_bypasses_the_store(chat_tokenizer: Any) -> None:
    from sah_core import ResearchAttentionConfig

    base = real_sparse_config()
    # The same stack, acting in the prefill phase too.
    prefill_config = ResearchAttentionConfig(
        masker_configs=list(base.masker_configs), phases=("prefill", "question", "decode")
    )
    store = ContextCacheStore()
    model = tiny_model("llama")
    request = Request(CONTEXT, QUESTIONS[0])
    with ModelAdapterHF.from_model(model, chat_tokenizer, context_cache=store) as dense:
        dense.process_request(request, GEN)
    assert store.context_length is not None
    with ModelAdapterHF.from_model(
        model, chat_tokenizer, prefill_config, context_cache=store
    ) as adapter:
        adapter.process_request(request, GEN)
        assert not adapter.last_request_stats.context_cache_hit
    assert store.hits == 0


def test_error_mid_batch_leaves_the_store_usable(chat_tokenizer: Any) -> None:
    model = tiny_model("llama")
    store = ContextCacheStore()
    request = Request(CONTEXT, QUESTIONS[0])
    with ModelAdapterHF.from_model(model, chat_tokenizer, context_cache=store) as adapter:
        expected = adapter.process_request(request, GEN).responses
        calls = {"n": 0}

        def fail_third(*_args: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("boom")

        handle = model.get_input_embeddings().register_forward_pre_hook(fail_third)
        try:
            with pytest.raises(RuntimeError, match="boom"):
                adapter.process_request(request, GEN)
        finally:
            handle.remove()
        again = adapter.process_request(request, GEN)
        assert adapter.last_request_stats.context_cache_hit
    assert again.responses == expected


def test_context_cache_must_be_a_store(chat_tokenizer: Any) -> None:
    adapter = ModelAdapterHF.from_model(tiny_model("llama"), chat_tokenizer)
    with adapter, pytest.raises(ValueError, match="context_cache must be a ContextCacheStore"):
        adapter.context_cache = {}  # type: ignore[assignment]


# -- ReservedKVLayer: writes into reserved room, never torch.cat; values as DynamicLayer's ----
def _pair(reserve: int) -> tuple[Any, Any]:
    from transformers.cache_utils import DynamicLayer

    from sah_adapters.reserved_kv import ReservedKVLayer

    plain = DynamicLayer()  # type: ignore[no-untyped-call]
    return plain, ReservedKVLayer.adopt(DynamicLayer(), reserve=reserve)  # type: ignore[no-untyped-call]


def _same(a: Any, b: Any) -> None:
    assert a.keys.shape == b.keys.shape
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


@pytest.mark.parametrize("reserve", [0, 3, 256])
def test_reserved_layer_holds_what_a_dynamic_layer_holds(reserve: int) -> None:
    """Random updates, repeats, rollbacks and outside assignments, against DynamicLayer."""
    gen = torch.Generator().manual_seed(reserve)
    plain, reserved = _pair(reserve)

    def update(rows: int, new: int) -> None:
        k, v = torch.randn(rows, 2, new, 4, generator=gen), torch.randn(rows, 2, new, 4)
        out_p, out_r = plain.update(k, v), reserved.update(k.clone(), v.clone())
        assert torch.equal(out_p[0], out_r[0]) and torch.equal(out_p[1], out_r[1])

    update(1, 9)  # the "context"
    for round_ in range(6):
        rows = [1, 3, 2, 3, 1, 3][round_]
        plain.batch_repeat_interleave(rows)
        reserved.batch_repeat_interleave(rows)
        _same(plain, reserved)
        for new in (2, 1, 1, 5)[: 2 + round_ % 3]:
            update(rows, new)
        _same(plain, reserved)
        # back to the context, as ContextCheckpoint.restore does
        plain.keys, plain.values = plain.keys[:1, :, :9], plain.values[:1, :, :9]
        reserved.rewind(9)
        _same(plain, reserved)
        if round_ == 3:  # someone assigns the tensors (an eviction, crop): they are the truth
            plain.keys = plain.keys[..., :7, :].clone()
            plain.values = plain.values[..., :7, :].clone()
            reserved.keys, reserved.values = plain.keys.clone(), plain.values.clone()
            update(1, 2)
            _same(plain, reserved)
            plain.keys, plain.values = plain.keys[..., :9, :], plain.values[..., :9, :]
            reserved.rewind(9)
        if round_ == 2:  # back to fewer tokens than the repeated rows share, then rewritten
            plain.keys, plain.values = plain.keys[:1, :, :7], plain.values[:1, :, :7]
            reserved.rewind(7)
            update(1, 2)
            _same(plain, reserved)
    # rows assigned from outside that differ, then back to row 0 and repeated again
    rows3 = torch.randn(3, 2, 9, 4, generator=gen)
    plain.keys, plain.values = rows3.clone(), rows3.clone() + 1
    reserved.keys, reserved.values = rows3.clone(), rows3.clone() + 1
    update(3, 1)
    plain.keys, plain.values = plain.keys[:1, :, :9], plain.values[:1, :, :9]
    reserved.rewind(9)
    plain.batch_repeat_interleave(3)
    reserved.batch_repeat_interleave(3)
    _same(plain, reserved)
    plain.keys, plain.values = plain.keys[:1], plain.values[:1]
    reserved.rewind(9)
    plain.batch_repeat_interleave(2)
    reserved.batch_repeat_interleave(2)
    update(2, 1)
    plain.batch_repeat_interleave(2)  # rows that differ: a plain repeat
    reserved.batch_repeat_interleave(2)
    _same(plain, reserved)


def test_reserved_layer_repeats_the_context_once_and_appends_in_place() -> None:
    _, layer = _pair(reserve=16)
    layer.update(torch.randn(1, 2, 10, 4), torch.randn(1, 2, 10, 4))
    layer.batch_repeat_interleave(3)
    buffer = layer.keys.untyped_storage().data_ptr()
    for _ in range(4):  # question and decode tokens: no new buffer
        layer.update(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))
        assert layer.keys.untyped_storage().data_ptr() == buffer
    context = layer.keys[:1, :, :10].clone()
    layer.rewind(10)
    layer.batch_repeat_interleave(3)  # the rows still hold the context: a view, no copy
    assert layer.keys.untyped_storage().data_ptr() == buffer
    assert torch.equal(layer.keys, context.expand(3, -1, -1, -1))
    layer.update(torch.randn(3, 2, 40, 4), torch.randn(3, 2, 40, 4))  # past the room: grows
    assert layer.keys.untyped_storage().data_ptr() != buffer
    assert torch.equal(layer.keys[:, :, :10], context.expand(3, -1, -1, -1))


def test_shared_context_is_repeated_once_for_every_config(chat_tokenizer: Any) -> None:
    from sah_adapters.reserved_kv import ReservedKVLayer

    model = tiny_model("llama")
    store = ContextCacheStore()
    request = Request(CONTEXT, QUESTIONS)
    buffers = set()
    for config in _sparse_configs():
        with ModelAdapterHF.from_model(model, chat_tokenizer, config, context_cache=store) as ad:
            ad.process_request(request, GEN, {"batch_size": 3})
        assert store._entry is not None
        layers = store._entry.cache.layers
        assert all(type(layer) is ReservedKVLayer for layer in layers)
        buffers.add(layers[0]._kbuf.untyped_storage().data_ptr())
    assert len(buffers) == 1 and store.hits == 2
