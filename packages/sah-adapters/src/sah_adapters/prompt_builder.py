"""Turning a request's context and question into token ids, split at the question.

The context part is what the adapter prefills once; every question part is appended to the
reused context KV cache. With a chat template the split point is found by rendering the
template with a sentinel where the question goes, so template text before the question
(system prompt, role headers, BOS) belongs to the context part and the text after it (end of
turn, assistant header) to the question part. ``answer_prefix`` goes right after the question
part, i.e. it opens the assistant's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sah_adapters.generation_settings import RequestSettings

logger = logging.getLogger(__name__)

# Private-use code points: no tokenizer text or template will contain this by accident.
_SENTINEL = "\ue000sah-question\ue001"

#: Allowed values of ``request_kwargs["truncation"]``.
TRUNCATION_MODES = ("middle", "left", "right")


@dataclass(frozen=True)
class PromptTemplate:
    """The text that wraps a request: ``prefix`` + question + ``suffix`` + answer prefix."""

    prefix: str  # template head + context (tokenized with the tokenizer's special tokens off)
    suffix: str  # template tail after the question (end of turn, assistant header)
    uses_chat_template: bool


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render(tokenizer: Any, content: str) -> str:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    if not isinstance(rendered, str):
        raise TypeError(f"apply_chat_template returned {type(rendered).__name__}, not str")
    return rendered


def build_template(tokenizer: Any, context: str, use_chat_template: bool) -> PromptTemplate:
    """Split the (chat-templated) prompt for ``context`` at the point where the question goes."""
    if not use_chat_template:
        return PromptTemplate(prefix=context, suffix="", uses_chat_template=False)
    rendered = _render(tokenizer, context + _SENTINEL)
    if rendered.count(_SENTINEL) != 1:
        raise ValueError(
            "the tokenizer's chat template does not render the user message verbatim, so the "
            "context cannot be split from the question; pass request_kwargs="
            "{'use_chat_template': False} to concatenate context and question instead"
        )
    prefix, suffix = rendered.split(_SENTINEL)
    return PromptTemplate(prefix=prefix, suffix=suffix, uses_chat_template=True)


def question_text(template: PromptTemplate, question: str, answer_prefix: str) -> str:
    """The text appended after the context for one question."""
    return question + template.suffix + answer_prefix


def encode_context(tokenizer: Any, template: PromptTemplate) -> list[int]:
    # A rendered chat template already spells out BOS and role tokens; plain text gets the
    # tokenizer's usual special tokens (BOS) instead.
    ids = tokenizer(template.prefix, add_special_tokens=not template.uses_chat_template)
    return list(ids["input_ids"])


def encode_question(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def truncate_context(tokenizer: Any, context: str, max_tokens: int, mode: str) -> str:
    """Cut ``context`` to at most ``max_tokens`` tokens (measured without special tokens).

    ``middle`` keeps the first and last halves (the LongBench convention: instructions at the
    start and the question-adjacent end both survive), ``left`` keeps the end, ``right`` the
    start. The kept tokens are decoded back to text so a chat template can wrap them.
    """
    if mode not in TRUNCATION_MODES:
        raise ValueError(
            f"request_kwargs['truncation']={mode!r} is not allowed; use one of {TRUNCATION_MODES}"
        )
    ids = list(tokenizer(context, add_special_tokens=False)["input_ids"])
    if len(ids) <= max_tokens:
        return context
    logger.info("truncating context from %d to %d tokens (%s)", len(ids), max_tokens, mode)
    if mode == "right":
        kept = [ids[:max_tokens]]
    elif mode == "left":
        kept = [ids[len(ids) - max_tokens :]] if max_tokens else []
    else:
        head = max_tokens // 2
        tail = max_tokens - head
        kept = [ids[:head], ids[len(ids) - tail :] if tail else []]
    return "".join(tokenizer.decode(part, skip_special_tokens=True) for part in kept)


def encode_prompt(
    tokenizer: Any,
    context: str,
    questions: Sequence[str],
    answer_prefix: str,
    options: RequestSettings,
) -> tuple[list[int], list[list[int]]]:
    """Token ids of the context and of each question (question + template suffix + answer
    prefix), as the adapter feeds them: the context cut to ``options.max_context_length``, the
    chat template used when the tokenizer has one unless ``options.use_chat_template`` says
    otherwise."""
    use_template = options.use_chat_template
    if use_template is None:
        use_template = has_chat_template(tokenizer)
    elif use_template and not has_chat_template(tokenizer):
        raise ValueError(
            "request_kwargs['use_chat_template']=True but the tokenizer has no chat template"
        )
    if options.max_context_length is not None:
        context = truncate_context(
            tokenizer, context, options.max_context_length, options.truncation
        )
    template = build_template(tokenizer, context, use_template)
    question_ids = [
        encode_question(tokenizer, question_text(template, q, answer_prefix)) for q in questions
    ]
    return encode_context(tokenizer, template), question_ids
