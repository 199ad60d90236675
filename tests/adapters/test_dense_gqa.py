"""The dense question/decode attention (sah_adapters.dense_gqa): GQA inside SDPA under a
padding mask computes exactly what transformers' SDPA (repeat_kv) computes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_testkit import CONTEXT, QUESTIONS, tiny_model

from sah_adapters import ModelAdapterHF, dense_gqa
from sah_protocol import Request


class _Module(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


@pytest.mark.parametrize("q_len", [1, 2, 37])
def test_equals_transformers_sdpa(q_len: int) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 9, q_len, 16, generator=gen)
    k = torch.randn(3, 3, 50, 16, generator=gen)
    v = torch.randn(3, 3, 50, 16, generator=gen)
    mask = torch.rand(3, 1, q_len, 50, generator=gen) > 0.3
    mask[..., 0] = True  # every row attends somewhere
    for m in (mask, None):
        ours, _ = dense_gqa.dense_gqa_attention(_Module(), q, k, v, m, scaling=0.25)
        theirs, _ = sdpa_attention_forward(_Module(), q, k, v, m, scaling=0.25)
        assert torch.equal(ours, theirs)


def test_padded_batch_answers_as_before(chat_tokenizer: Any, monkeypatch: Any) -> None:
    model = tiny_model("llama")  # GQA: 4 query heads over 2 KV heads
    calls: list[int] = []
    original = dense_gqa.dense_gqa_attention

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].shape[2])
        return original(*args, **kwargs)

    request = Request(CONTEXT, QUESTIONS)
    with ModelAdapterHF.from_model(model, chat_tokenizer) as adapter:
        from transformers import AttentionInterface

        monkeypatch.setitem(AttentionInterface._global_mapping, dense_gqa.DENSE_GQA_NAME, counting)
        adapter.process_request(request, {"max_new_tokens": 4}, {"batch_size": 3})
        assert adapter.last_request_stats is not None
        ours = adapter.last_request_stats.answer_token_ids
        assert max(calls) > 1  # the padded question step went through it
        monkeypatch.setattr(dense_gqa, "ensure_registered", lambda: "sdpa")
        adapter.process_request(request, {"max_new_tokens": 4}, {"batch_size": 3})
        assert adapter.last_request_stats.answer_token_ids == ours
    assert model.config._attn_implementation == "sdpa"
