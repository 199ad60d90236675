"""RULER-style synthetic tasks (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?"), generated offline and deterministically from a seed.

Every generator returns one row in the common schema whose full prompt (context + question +
answer prefix) is as close to ``target_tokens`` as possible without exceeding it, measured with
the given token counter. The same ``(task, seed, index, target_tokens, counter)`` always gives
the same row.

Tasks: needle-in-a-haystack with a single needle, several distractor keys (multikey), several
values for one key (multivalue) and several keys asked at once (multiquery); variable tracking
through a chain of assignments (vt); the most common words of a long list (cwe); the most
frequent words of a Zipf-distributed coded text (fwe).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sah_bench.synthetic.length import TokenCounter, largest_fitting
from sah_bench.synthetic.vocabulary import (
    filler_sentence,
    key_phrase,
    magic_number,
    pseudo_words,
    variable_name,
)

SYNTHETIC_TASKS: tuple[str, ...] = (
    "niah_single",
    "niah_multikey",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "fwe",
)

_NEEDLE = "One of the special magic numbers for {key} is: {value}."
_NIAH_INTRO = (
    "Some special magic numbers are hidden inside the following text. Make sure to memorise "
    "them; you will be asked about them afterwards.\n\n"
)


class _Haystack:
    """Filler sentences, produced on demand from a seed so any length is reproducible."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed + "/haystack")
        self._sentences: list[str] = []

    def sentences(self, n: int) -> list[str]:
        while len(self._sentences) < n:
            self._sentences.append(filler_sentence(self._rng))
        return self._sentences[:n]


def _insert(sentences: list[str], needles: list[str], depths: list[float]) -> str:
    """Place each needle at a relative depth (0 = start, 1 = end) among the sentences."""
    out = list(sentences)
    # Insert deepest first so earlier positions are not shifted by later insertions.
    for needle, depth in sorted(zip(needles, depths, strict=True), key=lambda p: -p[1]):
        out.insert(round(depth * len(sentences)), needle)
    return " ".join(out)


def _fit_haystack(
    seed: str,
    needles: list[str],
    depths: list[float],
    question: str,
    answer_prefix: str,
    count: TokenCounter,
    target: int,
    intro: str = _NIAH_INTRO,
) -> str:
    haystack = _Haystack(seed)

    def build(n: int) -> str:
        return intro + _insert(haystack.sentences(n), needles, depths) + "\n\n"

    def prompt(n: int) -> str:
        return build(n) + question + " " + answer_prefix

    n = largest_fitting(prompt, count, target, hi=max(8, target // 12))
    return build(n)


def _row(
    task: str, context: str, question: str, prefix: str, answers: list[str], max_new: int
) -> dict[str, Any]:
    return {
        "context": context,
        "question": question,
        "answer_prefix": prefix,
        "answers": answers,
        "task": task,
        "max_new_tokens": max_new,
    }


def niah_single(rng: random.Random, seed: str, count: TokenCounter, target: int) -> dict[str, Any]:
    key, value = key_phrase(rng), magic_number(rng)
    question = f"What is the special magic number for {key} mentioned in the text above?"
    prefix = f"The special magic number for {key} mentioned in the text is"
    context = _fit_haystack(
        seed,
        [_NEEDLE.format(key=key, value=value)],
        [rng.random()],
        question,
        prefix,
        count,
        target,
    )
    return _row("niah_single", context, question, prefix, [value], 16)


def _distinct_keys(rng: random.Random, n: int) -> list[str]:
    keys: list[str] = []
    while len(keys) < n:
        key = key_phrase(rng)
        if key not in keys:
            keys.append(key)
    return keys


def niah_multikey_rows(
    rng: random.Random,
    seed: str,
    count: TokenCounter,
    target: int,
    n_questions: int = 1,
    n_keys: int = 4,
) -> list[dict[str, Any]]:
    """Several needles with distinct keys; ``n_questions`` of them are asked, one row each.

    The rows share their context, so the executor asks them as one multi-question request (the
    context is prefilled once for all of them).
    """
    n_keys = max(n_keys, n_questions)
    keys = _distinct_keys(rng, n_keys)
    values = [magic_number(rng) for _ in keys]
    asked = rng.sample(range(n_keys), n_questions)
    questions = [
        f"What is the special magic number for {keys[i]} mentioned in the text above?"
        for i in asked
    ]
    prefixes = [f"The special magic number for {keys[i]} mentioned in the text is" for i in asked]
    needles = [_NEEDLE.format(key=k, value=v) for k, v in zip(keys, values, strict=True)]
    depths = [rng.random() for _ in needles]
    longest = max(range(n_questions), key=lambda j: len(questions[j]) + len(prefixes[j]))
    context = _fit_haystack(
        seed, needles, depths, questions[longest], prefixes[longest], count, target
    )
    if n_questions == 1:
        return [_row("niah_multikey", context, questions[0], prefixes[0], [values[asked[0]]], 16)]
    # A request has one answer prefix for all its questions, so it must not name the key.
    shared = "The special magic number is"
    return [
        _row("niah_multikey", context, q, shared, [values[i]], 16)
        for q, i in zip(questions, asked, strict=True)
    ]


def niah_multikey(
    rng: random.Random, seed: str, count: TokenCounter, target: int
) -> dict[str, Any]:
    return niah_multikey_rows(rng, seed, count, target)[0]


def niah_multivalue(
    rng: random.Random, seed: str, count: TokenCounter, target: int, n_values: int = 4
) -> dict[str, Any]:
    key = key_phrase(rng)
    values: list[str] = []
    while len(values) < n_values:
        v = magic_number(rng)
        if v not in values:
            values.append(v)
    question = f"What are all the special magic numbers for {key} mentioned in the text above?"
    prefix = f"The special magic numbers for {key} mentioned in the text are"
    needles = [_NEEDLE.format(key=key, value=v) for v in values]
    depths = [rng.random() for _ in needles]
    context = _fit_haystack(seed, needles, depths, question, prefix, count, target)
    return _row("niah_multivalue", context, question, prefix, values, 64)


def niah_multiquery(
    rng: random.Random, seed: str, count: TokenCounter, target: int, n_keys: int = 4
) -> dict[str, Any]:
    keys = _distinct_keys(rng, n_keys)
    values = [magic_number(rng) for _ in keys]
    joined = ", ".join(keys[:-1]) + f" and {keys[-1]}"
    question = f"What are the special magic numbers for {joined} mentioned in the text above?"
    prefix = f"The special magic numbers for {joined} mentioned in the text are"
    needles = [_NEEDLE.format(key=k, value=v) for k, v in zip(keys, values, strict=True)]
    depths = [rng.random() for _ in needles]
    context = _fit_haystack(seed, needles, depths, question, prefix, count, target)
    return _row("niah_multiquery", context, question, prefix, values, 64)


def variable_tracking(
    rng: random.Random, seed: str, count: TokenCounter, target: int, hops: int = 4
) -> dict[str, Any]:
    names: list[str] = []
    while len(names) < hops + 1:
        name = variable_name(rng)
        if name not in names:
            names.append(name)
    value = str(rng.randint(10_000, 99_999))
    statements = [f"VAR {names[0]} = {value}."] + [
        f"VAR {names[i]} = VAR {names[i - 1]}." for i in range(1, hops + 1)
    ]
    # Chain order is kept: sorted depths put each assignment after the one it reads.
    depths = sorted(rng.random() for _ in statements)
    question = (
        f"Find every variable that is assigned the value {value} in the text above, directly "
        "or through other variables."
    )
    prefix = f"The variables assigned the value {value} are:"
    intro = "Memorise the variable assignments hidden in the following text.\n\n"
    context = _fit_haystack(seed, statements, depths, question, prefix, count, target, intro)
    return _row("vt", context, question, prefix, names, 32)


def common_words(
    rng: random.Random, seed: str, count: TokenCounter, target: int, n_common: int = 10
) -> dict[str, Any]:
    """cwe: ``n_common`` words each appear more often than any other word of the list."""
    vocab = pseudo_words(rng, 2000)
    common, rare = vocab[:n_common], vocab[n_common:]
    question = f"What are the {n_common} most common words in the list above?"
    prefix = f"The {n_common} most common words in the list are:"
    intro = "Below is a numbered list of words. Some words appear more often than others.\n\n"

    def words_for(n_rare_items: int) -> list[str]:
        # Rare words repeat evenly; common words appear twice as often as the most repeated rare
        # word, so the top ``n_common`` are unambiguous.
        rare_items = [rare[i % len(rare)] for i in range(n_rare_items)]
        per_rare = -(-n_rare_items // len(rare)) if n_rare_items else 1
        items = rare_items + [w for w in common for _ in range(2 * per_rare + 1)]
        random.Random(f"{seed}/cwe/{n_rare_items}").shuffle(items)
        return items

    def build(n: int) -> str:
        listing = " ".join(f"{i + 1}. {w}" for i, w in enumerate(words_for(n)))
        return intro + listing + "\n\n"

    n = largest_fitting(lambda m: build(m) + question + " " + prefix, count, target, hi=64)
    return _row("cwe", build(n), question, prefix, common, 96)


def frequent_words(
    rng: random.Random, seed: str, count: TokenCounter, target: int, n_top: int = 3
) -> dict[str, Any]:
    """fwe: a coded text drawn from a Zipf-like law; the ``n_top`` most frequent words."""
    vocab = pseudo_words(rng, 400, syllables=2)
    question = f"Which are the {n_top} most frequently appearing coded words in the text above?"
    prefix = f"The {n_top} most frequent coded words are:"
    intro = "Read the coded text below and keep track of how often each coded word appears.\n\n"

    def words_for(n: int) -> list[str]:
        # Word of rank r appears about n / r**1.5 times; ranks 1..n_top get strictly distinct
        # counts that dominate every lower rank.
        counts = [max(1, int(n / (r + 1) ** 1.5)) for r in range(len(vocab))]
        for r in range(n_top):
            counts[r] = max(counts[r], counts[n_top] + (n_top - r) + 1)
        items = [w for w, c in zip(vocab, counts, strict=True) for _ in range(c)]
        random.Random(f"{seed}/fwe/{n}").shuffle(items)
        return items

    def build(n: int) -> str:
        return intro + " ".join(words_for(n)) + " ...\n\n"

    n = largest_fitting(lambda m: build(m) + question + " " + prefix, count, target, hi=16)
    return _row("fwe", build(n), question, prefix, vocab[:n_top], 32)


GENERATORS: dict[str, Callable[[random.Random, str, TokenCounter, int], dict[str, Any]]] = {
    "niah_single": niah_single,
    "niah_multikey": niah_multikey,
    "niah_multivalue": niah_multivalue,
    "niah_multiquery": niah_multiquery,
    "vt": variable_tracking,
    "cwe": common_words,
    "fwe": frequent_words,
}


def generate_rows(
    task: str,
    index: int,
    seed: int,
    target_tokens: int,
    count: TokenCounter,
    questions_per_context: int = 1,
) -> list[dict[str, Any]]:
    """The rows of sample ``index`` of ``task``; deterministic in all arguments.

    ``questions_per_context`` > 1 asks several needles of one ``niah_multikey`` context (rows
    sharing the context); the other tasks always ask one question.
    """
    if task not in GENERATORS:
        raise ValueError(f"synthetic: unknown task {task!r}; allowed: {list(SYNTHETIC_TASKS)}")
    if questions_per_context < 1:
        raise ValueError(
            f"synthetic: questions_per_context must be >= 1, got {questions_per_context}"
        )
    key = f"{seed}/{task}/{index}/{target_tokens}"
    rng = random.Random(key)
    if task == "niah_multikey" and questions_per_context > 1:
        key += f"/q{questions_per_context}"
        rows = niah_multikey_rows(
            random.Random(key), key, count, target_tokens, questions_per_context
        )
    else:
        rows = [GENERATORS[task](rng, key, count, target_tokens)]
    for row in rows:
        row["target_tokens"] = target_tokens
    return rows


def generate_row(
    task: str, index: int, seed: int, target_tokens: int, count: TokenCounter
) -> dict[str, Any]:
    """Row ``index`` of ``task`` (one question); deterministic in all arguments."""
    return generate_rows(task, index, seed, target_tokens, count)[0]
