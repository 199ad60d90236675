"""KV eviction through ModelAdapterHF: the cache really shrinks, full budget is dense, the
per-head layout equals a masked full-cache reference token for token."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_testkit import CONTEXT, QUESTIONS, tiny_model

import sah_adapters.evicted_cache as evicted_cache
from sah_adapters import ModelAdapterHF
from sah_core import ResearchAttentionConfig
from sah_core.eviction import (
    AdaKVConfig,
    H2OConfig,
    KNormConfig,
    PyramidKVConfig,
    SnapKVConfig,
    StreamingLLMConfig,
    TOVAConfig,
    pyramid_budget,
)
from sah_core.maskers import LocalMaskerConfig, SinkMaskerConfig
from sah_protocol import Request

NEW = 6
REQUEST = Request(CONTEXT, QUESTIONS[0], answer_prefix=" Answer:")
BATCH = Request(CONTEXT, QUESTIONS[:2], answer_prefix=" Answer:")


def _run(
    tokenizer: Any, config: Any, request: Request = REQUEST, **request_kwargs: Any
) -> tuple[list[list[int]], Any]:
    with ModelAdapterHF.from_model(tiny_model("llama"), tokenizer, config) as adapter:
        adapter.process_request(request, {"max_new_tokens": NEW}, request_kwargs or None)
        stats = adapter.last_request_stats
    assert stats is not None
    return stats.answer_token_ids, stats


@pytest.fixture(scope="module")
def dense(plain_tokenizer: Any) -> tuple[list[list[int]], Any]:
    return _run(plain_tokenizer, None)


@pytest.mark.parametrize(
    "eviction",
    [
        PyramidKVConfig(budget=1.0, window_size=8),
        AdaKVConfig(budget=1.0, window_size=8),
        H2OConfig(budget=1.0, decode_every=0),
    ],
    ids=lambda c: c.type_tag,
)
def test_full_budget_equals_dense(plain_tokenizer: Any, dense: Any, eviction: Any) -> None:
    tokens, stats = _run(plain_tokenizer, ResearchAttentionConfig([eviction]))
    assert tokens == dense[0]
    assert stats.context_kv_bytes == stats.context_kv_bytes_before_eviction > 0


@pytest.mark.parametrize(
    "eviction",
    [
        SnapKVConfig(budget=0.25, window_size=8),
        KNormConfig(budget=0.25),
        StreamingLLMConfig(budget=0.25),
        PyramidKVConfig(budget=0.25, window_size=8),
    ],
    ids=lambda c: c.type_tag,
)
def test_eviction_slices_the_cache(plain_tokenizer: Any, eviction: Any) -> None:
    seen: list[tuple[int, int]] = []
    original = evicted_cache.apply_keep_plan

    def spy(cache: Any, layer_idx: int, plan: Any) -> None:
        before = cache.layers[layer_idx].keys.shape[-2]
        original(cache, layer_idx, plan)
        seen.append((before, cache.layers[layer_idx].keys.shape[-2]))

    evicted_cache.apply_keep_plan = spy
    try:
        _, stats = _run(plain_tokenizer, ResearchAttentionConfig([eviction]))
    finally:
        evicted_cache.apply_keep_plan = original
    context, mean = stats.context_tokens, int(0.25 * stats.context_tokens)
    if isinstance(eviction, PyramidKVConfig):  # layer 0 keeps more than layer 1
        kept = [pyramid_budget(mean, context, 8, 20, layer, 2) for layer in (0, 1)]
        assert kept[0] > kept[1]
    else:
        kept = [mean, mean]
    assert seen == [(context, n) for n in kept]  # both layers, tensors sliced
    assert stats.context_kv_bytes * 4 <= stats.context_kv_bytes_before_eviction + 8 * 1024


def _masked_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evict by masking: the cache stays whole, each head's evicted keys get -inf."""
    plans: dict[int, Any] = {}

    def record(cache: Any, layer_idx: int, plan: Any) -> None:
        plans[layer_idx] = plan

    def mask(self: Any, layer_idx: int, query: Any, key: Any, attention_mask: Any) -> Any:
        plan = plans[layer_idx]
        b, hkv, k = key.shape[0], key.shape[1], key.shape[-2]
        allowed = torch.ones(b, hkv, k, dtype=torch.bool)
        allowed[:, :, : self.context_length] = False
        for h in range(hkv):
            count = int(plan.counts[0, h]) if plan.counts is not None else plan.kept
            allowed[:, h, plan.indices[0, h, :count]] = True
        allowed = allowed.repeat_interleave(query.shape[1] // hkv, dim=1)[:, :, None, :]
        additive = torch.where(allowed, 0.0, torch.finfo(query.dtype).min)
        if attention_mask is not None:
            additive = additive + attention_mask[..., -k:]
        return additive

    monkeypatch.setattr(evicted_cache, "apply_keep_plan", record)
    monkeypatch.setattr(evicted_cache.EvictionRun, "layer_mask", mask)
    monkeypatch.setattr(evicted_cache.EvictionRun, "needs_routing", property(lambda s: True))


def test_per_head_layout_equals_masked_reference(
    plain_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ResearchAttentionConfig([AdaKVConfig(budget=0.3, window_size=8)])
    layouts: list[Any] = []
    original = evicted_cache.apply_keep_plan

    def spy(cache: Any, layer_idx: int, plan: Any) -> None:
        original(cache, layer_idx, plan)
        layouts.append(cache.layers[layer_idx])

    monkeypatch.setattr(evicted_cache, "apply_keep_plan", spy)
    compact, stats = _run(plain_tokenizer, config, BATCH, batch_size=2)
    assert all(isinstance(layer, evicted_cache.PerHeadKVLayer) for layer in layouts)
    counts = [layer.slot_counts[0].tolist() for layer in layouts]
    assert any(len(set(c)) > 1 for c in counts)  # heads really keep different numbers
    assert [layer.evicted_slots for layer in layouts] == [max(c) for c in counts]
    assert stats.context_kv_bytes < stats.context_kv_bytes_before_eviction
    monkeypatch.undo()
    _masked_reference(monkeypatch)
    reference, _ = _run(plain_tokenizer, config, BATCH, batch_size=1)
    assert compact == reference


def test_every_eviction_batched_equals_one_by_one(plain_tokenizer: Any) -> None:
    """Unequal question lengths (left padding) over every eviction's survivors."""
    for eviction in (
        StreamingLLMConfig(budget=0.3),
        SnapKVConfig(budget=0.3, window_size=8),
        PyramidKVConfig(budget=0.3, window_size=8),
        AdaKVConfig(budget=0.3, window_size=8),
        KNormConfig(budget=0.3),
        TOVAConfig(budget=0.3, decode_every=0),
        H2OConfig(budget=0.3, decode_every=0),
    ):
        config = ResearchAttentionConfig([eviction])
        alone, _ = _run(plain_tokenizer, config, BATCH)
        batched, _ = _run(plain_tokenizer, config, BATCH, batch_size=2)
        assert alone == batched, eviction.type_tag


def test_eviction_composes_with_selection(plain_tokenizer: Any) -> None:
    config = ResearchAttentionConfig(
        [SnapKVConfig(budget=0.5, window_size=8), SinkMaskerConfig(2), LocalMaskerConfig(4)]
    )
    one, _ = _run(plain_tokenizer, config, BATCH)
    batched, stats = _run(plain_tokenizer, config, BATCH, batch_size=2)
    assert one == batched  # unequal question lengths: padding handled over the survivors
    assert stats.context_kv_bytes * 2 <= stats.context_kv_bytes_before_eviction


def test_decode_time_eviction_holds_the_budget(plain_tokenizer: Any) -> None:
    lengths: list[int] = []
    original = evicted_cache.EvictionRun.after_step_attention

    def spy(self: Any, layer_idx: int, *args: Any, **kwargs: Any) -> None:
        original(self, layer_idx, *args, **kwargs)
        if kwargs.get("decoding"):
            lengths.append(self.cache.layers[layer_idx].keys.shape[-2])

    evicted_cache.EvictionRun.after_step_attention = spy  # type: ignore[method-assign]
    try:
        for config in (TOVAConfig(budget=0.25), H2OConfig(budget=0.25)):
            lengths.clear()
            _, stats = _run(plain_tokenizer, ResearchAttentionConfig([config]))
            assert set(lengths) == {int(0.25 * stats.context_tokens)}
    finally:
        evicted_cache.EvictionRun.after_step_attention = original  # type: ignore[method-assign]


def test_bad_eviction_setups_raise(plain_tokenizer: Any) -> None:
    two = ResearchAttentionConfig([SnapKVConfig(), KNormConfig()])
    with pytest.raises(ValueError, match="at most one eviction"):
        ModelAdapterHF.from_model(tiny_model("llama"), plain_tokenizer, two)
    with (
        ModelAdapterHF.from_model(
            tiny_model("llama"), plain_tokenizer, ResearchAttentionConfig([TOVAConfig()])
        ) as adapter,
        pytest.raises(ValueError, match=r"batch_size'\]=2 is not allowed"),
    ):
        adapter.process_request(BATCH, {"max_new_tokens": 2}, {"batch_size": 2})
    with (
        ModelAdapterHF.from_model(
            tiny_model("mistral"), plain_tokenizer, ResearchAttentionConfig([SnapKVConfig()])
        ) as adapter,
        pytest.raises(ValueError, match="sliding window"),
    ):
        adapter.process_request(REQUEST, {"max_new_tokens": 2})
