"""Validated generation and request options of ``ModelAdapterHF.process_request``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sah_adapters.prompt_builder import TRUNCATION_MODES

DEFAULT_MAX_NEW_TOKENS = 32

GENERATION_KEYS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "eos_token_id",
)
REQUEST_KEYS = (
    "batch_size",
    "max_context_length",
    "truncation",
    "use_chat_template",
    "question_feed",
    "sparse_prefill",
)
#: ``request_kwargs["question_feed"]``: the question tokens in one forward ("block") or one
#: token per forward ("token", for layers that cannot take a multi-token sparse step).
QUESTION_FEEDS = ("block", "token")


def _reject_unknown(kind: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{kind} has unknown key(s) {unknown}; allowed keys: {list(allowed)}")


def _int_at_least(kind: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{kind}[{key!r}]={value!r} must be an int >= {minimum}")
    return value


@dataclass(frozen=True)
class GenerationSettings:
    """How tokens are chosen and when generation stops."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    seed: int | None = None
    stop: tuple[str, ...] = ()
    eos_token_ids: tuple[int, ...] | None = None  # None = the model's/tokenizer's own

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> GenerationSettings:
        """Validate ``generation_kwargs``.

        Greedy unless ``do_sample=True`` or, with ``do_sample`` unset, a sampling knob is given
        (``temperature`` > 0, ``top_p`` < 1, ``top_k`` > 0). ``temperature=0`` means greedy.
        """
        kw = dict(kwargs or {})
        kind = "generation_kwargs"
        _reject_unknown(kind, kw, GENERATION_KEYS)
        max_new = _int_at_least(
            kind, "max_new_tokens", kw.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), 1
        )
        temperature = kw.get("temperature", 1.0)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not (math.isfinite(temperature) and temperature >= 0)
        ):
            raise ValueError(f"{kind}['temperature']={temperature!r} must be a finite float >= 0")
        top_p = kw.get("top_p", 1.0)
        if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
            raise ValueError(f"{kind}['top_p']={top_p!r} must be a float in (0, 1]")
        top_k = _int_at_least(kind, "top_k", kw.get("top_k", 0), 0)
        seed = kw.get("seed")
        if seed is not None:
            seed = _int_at_least(kind, "seed", seed, 0)
        stop_value = kw.get("stop", ())
        if isinstance(stop_value, str):
            stop_value = (stop_value,)
        if not isinstance(stop_value, list | tuple) or not all(
            isinstance(s, str) and s for s in stop_value
        ):
            raise ValueError(
                f"{kind}['stop']={stop_value!r} must be a non-empty str or a list of them"
            )
        eos = kw.get("eos_token_id")
        eos_ids: tuple[int, ...] | None = None
        if eos is not None:
            eos_list = [eos] if isinstance(eos, int) else eos
            if not isinstance(eos_list, list | tuple) or not all(
                isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in eos_list
            ):
                raise ValueError(f"{kind}['eos_token_id']={eos!r} must be an int >= 0 or a list")
            eos_ids = tuple(eos_list)
        do_sample = kw.get("do_sample")
        if do_sample is None:
            do_sample = (
                ("temperature" in kw and temperature > 0)
                or ("top_p" in kw and top_p < 1)
                or ("top_k" in kw and top_k > 0)
            )
        elif not isinstance(do_sample, bool):
            raise ValueError(f"{kind}['do_sample']={do_sample!r} must be a bool")
        if do_sample and temperature == 0:
            do_sample = False  # temperature 0 is the limit of sampling: greedy
        return cls(
            max_new_tokens=max_new,
            do_sample=bool(do_sample),
            temperature=float(temperature),
            top_p=float(top_p),
            top_k=top_k,
            seed=seed,
            stop=tuple(stop_value),
            eos_token_ids=eos_ids,
        )


@dataclass(frozen=True)
class RequestSettings:
    """How a request's questions are batched and its context is truncated."""

    batch_size: int = 1
    max_context_length: int | None = None
    truncation: str = "middle"
    use_chat_template: bool | None = None  # None = use it when the tokenizer has one
    question_feed: str = "block"
    sparse_prefill: bool = False  # True: the stack also acts in the "prefill" phase

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> RequestSettings:
        kw = dict(kwargs or {})
        kind = "request_kwargs"
        _reject_unknown(kind, kw, REQUEST_KEYS)
        batch_size = _int_at_least(kind, "batch_size", kw.get("batch_size", 1), 1)
        max_len = kw.get("max_context_length")
        if max_len is not None:
            max_len = _int_at_least(kind, "max_context_length", max_len, 1)
        truncation = kw.get("truncation", "middle")
        if truncation not in TRUNCATION_MODES:
            raise ValueError(
                f"{kind}['truncation']={truncation!r} is not allowed; use one of {TRUNCATION_MODES}"
            )
        use_template = kw.get("use_chat_template")
        if use_template is not None and not isinstance(use_template, bool):
            raise ValueError(f"{kind}['use_chat_template']={use_template!r} must be a bool")
        feed = kw.get("question_feed", "block")
        if feed not in QUESTION_FEEDS:
            raise ValueError(
                f"{kind}['question_feed']={feed!r} is not allowed; use one of {QUESTION_FEEDS}"
            )
        sparse_prefill = kw.get("sparse_prefill", False)
        if not isinstance(sparse_prefill, bool):
            raise ValueError(f"{kind}['sparse_prefill']={sparse_prefill!r} must be a bool")
        return cls(
            batch_size, max_len, truncation, use_template, feed, sparse_prefill=sparse_prefill
        )
