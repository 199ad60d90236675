"""process_request: prompt assembly, KV reuse, stopping, sampling, truncation, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adapter_testkit import CONTEXT, QUESTIONS, real_sparse_config, tiny_model

from sah_adapters import GenerationSettings, ModelAdapterHF
from sah_adapters.decoding import TokenDecoder
from sah_adapters.prompt_builder import build_template, truncate_context
from sah_protocol import Request


@pytest.fixture
def adapter(chat_tokenizer: Any) -> Any:
    with ModelAdapterHF.from_model(tiny_model("llama"), chat_tokenizer) as a:
        yield a


def _ids(adapter: ModelAdapterHF, request: Request, gen: dict[str, Any] | None = None) -> Any:
    adapter.process_request(request, {"max_new_tokens": 12, **(gen or {})})
    return adapter.last_request_stats.answer_token_ids


def test_context_is_prefilled_once_and_reused(chat_tokenizer: Any) -> None:
    model = tiny_model("llama")
    seen: list[int] = []  # tokens of every forward pass, read at the embedding (test-only hook)
    handle = model.model.embed_tokens.register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].shape[1])
    )
    try:
        with ModelAdapterHF.from_model(model, chat_tokenizer, real_sparse_config()) as adapter:
            seen.clear()  # drop the construction-time probe
            adapter.process_request(Request(CONTEXT, QUESTIONS), {"max_new_tokens": 4})
            stats = adapter.last_request_stats
    finally:
        handle.remove()
    assert stats.context_tokens > 50
    assert seen.count(stats.context_tokens) == 1  # one context prefill for three questions
    assert seen[0] == stats.context_tokens
    assert sorted(seen[1:]) == sorted(stats.question_tokens + [1] * 3 * 3)


def test_no_state_leaks_between_requests_or_questions(chat_tokenizer: Any) -> None:
    with ModelAdapterHF.from_model(
        tiny_model("qwen2"), chat_tokenizer, real_sparse_config()
    ) as adapter:
        first = _ids(adapter, Request(CONTEXT, QUESTIONS[0]))
        _ids(adapter, Request("A different context entirely. " * 5, QUESTIONS[1]))
        again = _ids(adapter, Request(CONTEXT, [QUESTIONS[1], QUESTIONS[0]]))
    assert again[1] == first[0]


def test_chat_template_split_is_clean(chat_tokenizer: Any) -> None:
    template = build_template(chat_tokenizer, CONTEXT, use_chat_template=True)
    full = chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": CONTEXT + QUESTIONS[0]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert template.prefix + QUESTIONS[0] + template.suffix == full
    assert template.prefix.endswith(CONTEXT)
    assert template.suffix == "<|end|><|assistant|>"


def test_answer_prefix_and_plain_concatenation(plain_tokenizer: Any) -> None:
    template = build_template(plain_tokenizer, CONTEXT, use_chat_template=False)
    assert (template.prefix, template.suffix) == (CONTEXT, "")
    with ModelAdapterHF.from_model(tiny_model("llama"), plain_tokenizer) as adapter:
        adapter.process_request(Request(CONTEXT, "Q?", answer_prefix=" A:"))
        stats = adapter.last_request_stats
    assert stats.question_tokens == [len(plain_tokenizer("Q? A:", add_special_tokens=False)[0])]
    assert stats.context_tokens == len(plain_tokenizer(CONTEXT)["input_ids"])  # BOS included


def test_eos_ends_the_answer(adapter: Any) -> None:
    request = Request(CONTEXT, QUESTIONS[0])
    greedy = _ids(adapter, request)[0]
    stop_at = next(i for i, t in enumerate(greedy) if t not in greedy[:i] and i >= 2)
    cut = _ids(adapter, request, {"eos_token_id": greedy[stop_at]})[0]
    assert cut == greedy[:stop_at]
    cut_list = _ids(adapter, request, {"eos_token_id": [999, greedy[stop_at]]})[0]
    assert cut_list == greedy[:stop_at]


def test_stop_string_cuts_the_answer(adapter: Any, chat_tokenizer: Any) -> None:
    request = Request(CONTEXT, QUESTIONS[0])
    full = adapter.process_request(request, {"max_new_tokens": 12}).responses
    greedy = adapter.last_request_stats.answer_token_ids[0]
    pieces = [chat_tokenizer.decode([t]) for t in greedy[1:]]
    stop = next(p for p in pieces if p.isascii() and p.isprintable() and p.strip())
    answer = adapter.process_request(request, {"max_new_tokens": 12, "stop": stop}).responses
    assert answer == full[: full.index(stop)]
    assert len(adapter.last_request_stats.answer_token_ids[0]) < len(greedy)


def test_sampling_is_seeded_and_degenerate_sampling_is_greedy(adapter: Any) -> None:
    request = Request(CONTEXT, QUESTIONS[1])
    greedy = _ids(adapter, request)
    hot = {"temperature": 5.0, "seed": 7}
    assert _ids(adapter, request, hot) == _ids(adapter, request, hot)
    draws = {str(_ids(adapter, request, {"temperature": 5.0, "seed": s})) for s in range(4)}
    assert len(draws) > 1 and str(greedy) not in draws
    assert _ids(adapter, request, {"top_k": 1, "seed": 3, "temperature": 5.0}) == greedy
    assert _ids(adapter, request, {"top_p": 1e-6, "seed": 3, "temperature": 5.0}) == greedy
    assert _ids(adapter, request, {"temperature": 0.0}) == greedy


def _first_tokens(settings: GenerationSettings, logits: Any, generator: Any) -> Any:
    decoder = TokenDecoder(settings, None, eos_token_ids=(), pad_token_id=0)
    # One token per row: the step function is never called.
    return torch.tensor(decoder.run(logits, lambda _t: logits, generator))[:, 0]


def test_top_k_and_top_p_sample_only_allowed_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    generator = torch.Generator().manual_seed(0)
    top_k = GenerationSettings.from_kwargs({"top_k": 3, "max_new_tokens": 1})
    allowed = torch.topk(logits, 3, dim=-1).indices
    for _ in range(50):
        tokens = _first_tokens(top_k, logits, generator)
        assert (allowed == tokens[:, None]).any(dim=-1).all()
    top_p = GenerationSettings.from_kwargs({"top_p": 0.5, "max_new_tokens": 1})
    probs = torch.softmax(logits, dim=-1)
    for _ in range(50):
        tokens = _first_tokens(top_p, logits, generator)
        chosen = probs.gather(-1, tokens[:, None])
        # Nucleus property: the mass strictly above a chosen token is below top_p.
        assert (torch.where(probs > chosen, probs, 0).sum(-1) < 0.5).all()


@pytest.mark.parametrize("mode", ["middle", "left", "right"])
def test_truncation_modes(plain_tokenizer: Any, mode: str) -> None:
    ids = plain_tokenizer(CONTEXT, add_special_tokens=False)["input_ids"]
    decode = plain_tokenizer.decode
    cut = truncate_context(plain_tokenizer, CONTEXT, 20, mode)
    if mode == "right":
        assert cut == decode(ids[:20])
    elif mode == "left":
        assert cut == decode(ids[-20:])
    else:
        assert cut == decode(ids[:10]) + decode(ids[-10:])
    assert truncate_context(plain_tokenizer, CONTEXT, 10_000, mode) == CONTEXT


def test_max_context_length_applies(adapter: Any) -> None:
    adapter.process_request(Request(CONTEXT, QUESTIONS[0]))
    long_len = adapter.last_request_stats.context_tokens
    adapter.process_request(
        Request(CONTEXT, QUESTIONS[0]), request_kwargs={"max_context_length": 30}
    )
    short_len = adapter.last_request_stats.context_tokens
    template_overhead = len(adapter.tokenizer("<bos><|user|>")["input_ids"])
    assert short_len <= 30 + template_overhead + 2 < long_len


def test_single_question_gets_str_and_list_gets_list(adapter: Any) -> None:
    assert isinstance(adapter.process_request(Request(CONTEXT, "Q?")).responses, str)
    listed = adapter.process_request(Request(CONTEXT, ["Q?", "R?"])).responses
    assert isinstance(listed, list) and len(listed) == 2


def test_empty_question_continues_the_context(plain_tokenizer: Any) -> None:
    with ModelAdapterHF.from_model(tiny_model("llama"), plain_tokenizer) as adapter:
        answers = _ids(adapter, Request(CONTEXT + QUESTIONS[0], ["", ""]))
        joined = _ids(adapter, Request(CONTEXT, QUESTIONS[0]))
    assert answers[0] == answers[1]
    assert len(answers[0]) > 0 and joined[0][:1] != []


@pytest.mark.parametrize(
    ("gen", "req", "match"),
    [
        ({"max_new_tokens": 0}, None, "max_new_tokens"),
        ({"max_tokens": 5}, None, r"unknown key\(s\) \['max_tokens'\]"),
        ({"temperature": -1}, None, "temperature"),
        ({"top_p": 0}, None, "top_p"),
        ({"top_k": -2}, None, "top_k"),
        ({"stop": [""]}, None, "stop"),
        ({"seed": "x"}, None, "seed"),
        ({"eos_token_id": [1, "a"]}, None, "eos_token_id"),
        ({"do_sample": "yes"}, None, "do_sample"),
        (None, {"batch_size": 0}, r"request_kwargs\['batch_size'\]=0 must be an int >= 1"),
        (None, {"batch_size": True}, r"\['batch_size'\]=True must be an int >= 1"),
        (None, {"truncation": "both"}, r"truncation.*middle"),
        (None, {"max_context_length": -5}, r"\['max_context_length'\]=-5 must be an int >= 1"),
        (None, {"use_chat_template": "no"}, r"\['use_chat_template'\]='no' must be a bool"),
        (None, {"chunk": 3}, r"request_kwargs has unknown key"),
    ],
)
def test_bad_options_raise_value_error(adapter: Any, gen: Any, req: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        adapter.process_request(Request(CONTEXT, "Q?"), gen, req)


def test_bad_request_and_template_choice(adapter: Any, plain_tokenizer: Any) -> None:
    with pytest.raises(ValueError, match=r"sah_protocol\.Request"):
        adapter.process_request({"context": "c", "questions": "q"})
    with ModelAdapterHF.from_model(tiny_model("llama"), plain_tokenizer) as plain:
        with pytest.raises(ValueError, match="no chat template"):
            plain.process_request(Request("c", "q"), request_kwargs={"use_chat_template": True})
        # Empty context and question still leave the tokenizer's BOS to start from.
        assert isinstance(plain.process_request(Request("", "")).responses, str)


@pytest.mark.parametrize(
    ("family", "batch_size", "mask_free"),
    [("llama", 1, True), ("llama", 3, False), ("mistral", 1, False)],
)
def test_decode_steps_skip_an_all_zero_mask(
    family: str, batch_size: int, mask_free: bool, chat_tokenizer: Any
) -> None:
    """Unpadded decode with no binding window gets mask None; padding or a window keep it."""
    with ModelAdapterHF.from_model(tiny_model(family), chat_tokenizer, real_sparse_config()) as a:
        masks: list[Any] = []
        original = a._attend

        def spy(module: Any, query: Any, key: Any, value: Any, mask: Any, *rest: Any) -> Any:
            if query.shape[2] == 1:
                masks.append(mask)
            return original(module, query, key, value, mask, *rest)

        a._attend = spy  # type: ignore[method-assign]
        a.process_request(
            Request(CONTEXT, QUESTIONS), {"max_new_tokens": 4}, {"batch_size": batch_size}
        )
    assert masks
    # The window of mistral (8) is shorter than the context: every step needs its mask.
    assert all((m is None) == mask_free for m in masks)
