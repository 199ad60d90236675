"""Registration with transformers' registries: switching, restoring, unregistering, detection."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch
from adapter_testkit import (
    CONTEXT,
    QUESTIONS,
    full_budget_config,
    real_sparse_config,
    tiny_config,
    tiny_model,
)
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from sah_adapters import ModelAdapterHF, is_registered
from sah_protocol import Request


def _in_registries(name: str) -> tuple[bool, bool]:
    return (
        name in AttentionInterface._global_mapping,
        name in AttentionMaskInterface._global_mapping,
    )


def test_registered_while_open_and_removed_by_close(chat_tokenizer: Any) -> None:
    model = tiny_model("llama")
    adapter = ModelAdapterHF.from_model(model, chat_tokenizer, real_sparse_config())
    name = adapter.attention_name
    assert "sdpa" not in name
    assert _in_registries(name) == (True, True)
    assert AttentionInterface()[name] is adapter.get_custom_attention_function()
    adapter.close()
    assert _in_registries(name) == (False, False)
    assert model.config._attn_implementation == "sdpa"
    adapter.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        adapter.process_request(Request(CONTEXT, QUESTIONS[0]))


def test_context_manager_unregisters_even_on_error(chat_tokenizer: Any) -> None:
    model = tiny_model("qwen2")
    with (
        pytest.raises(KeyError, match="boom"),
        ModelAdapterHF.from_model(model, chat_tokenizer) as adapter,
    ):
        name = adapter.attention_name
        raise KeyError("boom")
    assert not is_registered(name)


def test_sparse_mode_switches_and_always_restores(chat_tokenizer: Any) -> None:
    model = tiny_model("qwen3")
    with ModelAdapterHF.from_model(model, chat_tokenizer, full_budget_config()) as adapter:
        assert model.config._attn_implementation == "sdpa"
        with adapter.enable_sparse_mode():
            assert model.config._attn_implementation == adapter.attention_name
            with adapter.enable_dense_mode():
                assert model.config._attn_implementation == "sdpa"
            assert model.config._attn_implementation == adapter.attention_name
        assert model.config._attn_implementation == "sdpa"
        with pytest.raises(ZeroDivisionError), adapter.enable_sparse_mode():
            _ = 1 / 0
        assert model.config._attn_implementation == "sdpa"


def test_sparse_mode_calls_the_registered_function_in_every_layer(chat_tokenizer: Any) -> None:
    model = tiny_model("phi3")
    calls: list[int] = []
    with ModelAdapterHF.from_model(model, chat_tokenizer, full_budget_config()) as adapter:
        research = adapter._research_attention
        original = research.custom_attention

        def spy(module: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(module.layer_idx)
            return original(module, *args, **kwargs)

        research.custom_attention = spy  # test-only spy on our own object
        ids = torch.tensor([[5, 6, 7]])
        with torch.no_grad():
            model(input_ids=ids)
        assert calls == []  # dense by default
        with torch.no_grad(), adapter.enable_sparse_mode():
            model(input_ids=ids)
        assert calls == [0, 1]


def test_two_adapters_do_not_interfere(chat_tokenizer: Any) -> None:
    model = tiny_model("llama")
    request = Request(CONTEXT, QUESTIONS)
    with ModelAdapterHF.from_model(model, chat_tokenizer, real_sparse_config()) as alone:
        sparse_alone = alone.process_request(request, {"max_new_tokens": 6}).responses
    with ModelAdapterHF.from_model(model, chat_tokenizer) as alone_dense:
        dense_alone = alone_dense.process_request(request, {"max_new_tokens": 6}).responses

    sparse = ModelAdapterHF.from_model(model, chat_tokenizer, real_sparse_config())
    full = ModelAdapterHF.from_model(model, chat_tokenizer, full_budget_config())
    assert sparse.attention_name != full.attention_name
    for _ in range(2):  # interleaved use of one model object
        assert sparse.process_request(request, {"max_new_tokens": 6}).responses == sparse_alone
        assert full.process_request(request, {"max_new_tokens": 6}).responses == dense_alone
    sparse.close()
    assert not is_registered(sparse.attention_name)
    assert is_registered(full.attention_name)
    assert full.process_request(request, {"max_new_tokens": 6}).responses == dense_alone
    full.close()


def test_forgotten_adapter_is_unregistered_when_collected(chat_tokenizer: Any) -> None:
    adapter = ModelAdapterHF.from_model(tiny_model("llama"), chat_tokenizer)
    name = adapter.attention_name
    del adapter
    gc.collect()
    assert not is_registered(name)


class _HandRolledAttention(torch.nn.Module):
    """An attention layer that never consults transformers' AttentionInterface."""

    def __init__(self, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return torch.zeros_like(hidden_states), None


def test_model_bypassing_the_registry_is_refused(chat_tokenizer: Any) -> None:
    import copy

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(copy.deepcopy(tiny_config("llama"))).eval()
    model.model.layers[1].self_attn = _HandRolledAttention(1)
    with pytest.raises(ValueError, match=r"AttentionInterface.*layers \[1\]"):
        ModelAdapterHF.from_model(model, chat_tokenizer, real_sparse_config())
    # Nothing is left registered and the model is back on its own attention.
    assert model.config._attn_implementation == "sdpa"
    leftovers = [k for k in AttentionInterface._global_mapping if k.startswith("sah_research")]
    assert leftovers == []


def test_bad_sparse_config_is_refused(chat_tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="sparse_attention_config"):
        ModelAdapterHF.from_model(tiny_model("llama"), chat_tokenizer, {"masker_configs": []})
