"""InfiniteBench's scorers (Zhang et al., 2024, "∞Bench"), as OpenBMB ``src/compute_scores.py``.

The hub copy stores every label as a list of strings; each scorer rebuilds the label the
official code sees (its first element, an int, a float, or ``[option text, letter]``) and then
applies the official rule. Quirks matched (each also in the scorer's docstring):

- passkey / number_string / kv_retrieval / longdialogue read only the *first* reference.
- passkey / number_string: the first run of ASCII digits in the prediction, compared as text.
- kv_retrieval / longdialogue: the prediction is split into words after turning
  ``\\n : " ' . , ? ! { }`` into spaces; the label must be one of the words (whole-word match).
  longdialogue upper-cases the words but *not* the label, so a label with lower-case letters
  never matches.
- math_find: the first ``\\d+\\.\\d+|\\d+`` (no sign) equals the label as an int or a float.
- math_calc: all ASCII digit runs of the prediction (signs dropped) are compared with the
  label list position by position; the score is the length of the matching prefix / label
  length (the GPT-4-only "skip the first number" rule is not applied).
- code_run: the last word (after turning ``\\n . ` ' " :`` into spaces) parsed with ``int()``.
- longbook_choice_eng and code_debug: see their docstrings (first-letter and prefix rules).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

_OPTION_LETTERS = "ABCD"
_WORD_SEPARATORS = ("\n", ":", '"', "'", ".", ",", "?", "!", "{", "}")
_CODE_RUN_SEPARATORS = ("\n", ".", "`", "'", '"', ":")
_CHOICE_SEPARATORS = ("\n", '"', "'", ".", ",", "?", "!", "{", "}")
_CODE_DEBUG_SEPARATORS = ("\n", "`", "'", '"', "-", "*", "Option", "option")
_CHOICE_PREFIXES = ("answer is:", "answer:", "answer is", "option is")
_CODE_DEBUG_PREFIXES = ("answer is:", "is:", "answer:", "correct option is:")
_FIRST_NUMBER = re.compile(r"\d+\.\d+|\d+")
_NON_DIGIT = re.compile(r"[^0-9]")


def _first_label(answers: Sequence[str], scorer: str) -> str:
    if len(answers) == 0:
        raise ValueError(f"{scorer}: answers is empty; the row needs its reference label")
    return str(answers[0])


def _replace_all(text: str, separators: Sequence[str]) -> str:
    for sep in separators:
        text = text.replace(sep, " ")
    return text


def _collapse_spaces(text: str) -> str:
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def first_int_match(prediction: str) -> str:
    """The first run of ASCII digits ("" when there is none)."""
    return next((item for item in _NON_DIGIT.split(prediction) if item), "")


def first_int_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """passkey / number_string: first digit run == first reference (string compare)."""
    return float(_first_label(answers, "first_int_score") == first_int_match(prediction))


def kv_retrieval_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """kv_retrieval: the first reference is one of the prediction's words."""
    label = _first_label(answers, "kv_retrieval_score")
    return float(label in _replace_all(prediction, _WORD_SEPARATORS).split())


def longdialogue_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """longdialogue_qa_eng: the first reference is one of the prediction's upper-cased words.

    The label itself is not upper-cased (official quirk): "ACE" matches "ace", "Remo" never does.
    """
    label = _first_label(answers, "longdialogue_score")
    words = _replace_all(prediction.strip(), _WORD_SEPARATORS).split()
    return float(label in [word.upper() for word in words])


def _numeric_label(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"math_find_score: reference {text!r} is neither an int nor a float"
        ) from None


def math_find_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """math_find: the first unsigned number of the prediction equals the label.

    An int label compares ``int(first match)``; when that match is a decimal ("3.5") the official
    code raises ValueError, which we score 0. Negative labels never match (the regex has no sign).
    """
    label = _numeric_label(_first_label(answers, "math_find_score").strip())
    match = _FIRST_NUMBER.search(prediction)
    if match is None:
        return 0.0
    found = match.group(0)
    if isinstance(label, int):
        if "." in found:
            return 0.0  # official: int("3.5") raises
        return float(int(found) == label)
    return float(float(found) == label)


def _int_list_label(answers: Sequence[str]) -> list[int]:
    items: list[object] = list(answers)
    if len(items) == 1 and isinstance(items[0], str) and items[0].strip().startswith("["):
        parsed = ast.literal_eval(items[0].strip())
        items = list(parsed) if isinstance(parsed, list | tuple) else [parsed]
    if items and isinstance(items[0], list | tuple):
        items = list(items[0])
    try:
        return [int(str(item).strip()) for item in items]
    except ValueError:
        raise ValueError(
            f"math_calc_score: references {list(answers)!r} are not integers"
        ) from None


def math_calc_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """math_calc: length of the prefix of digit runs equal to the label list / label length."""
    label = _int_list_label(answers)
    if not label:
        raise ValueError("math_calc_score: the reference list is empty")
    predicted = [int(item) for item in _NON_DIGIT.split(prediction) if item]
    matched = 0
    for want, got in zip(label, predicted, strict=False):
        if want != got:
            break
        matched += 1
    return matched / len(label)


def code_run_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """code_run: ``int(last word)`` equals the integer label (a non-integer label never does)."""
    try:
        label: int | None = int(_first_label(answers, "code_run_score").strip())
    except ValueError:
        label = None  # official: an int never equals a non-int label
    words = _replace_all(prediction.strip(), _CODE_RUN_SEPARATORS).split()
    if not words or label is None:
        return 0.0
    try:
        return float(int(words[-1]) == label)
    except ValueError:
        return 0.0


def choice_label(answers: Sequence[str], options: Sequence[str] | None, scorer: str) -> list[str]:
    """The official ``[option text, letter]`` label from the hub answer and the row's options."""
    refs = [str(a) for a in answers]
    if len(refs) == 2 and refs[1] in _OPTION_LETTERS:
        return refs
    if len(refs) != 1:
        raise ValueError(f"{scorer}: expected one reference (a letter or an option), got {refs!r}")
    if options is None or len(options) != len(_OPTION_LETTERS):
        raise ValueError(
            f"{scorer}: needs the row's 'options' (the 4 option texts A-D), got {options!r}"
        )
    texts = [str(o) for o in options]
    ref = refs[0].strip()
    if len(ref) == 1 and ref in _OPTION_LETTERS:
        return [texts[_OPTION_LETTERS.index(ref)], ref]
    if refs[0] in texts:
        return [refs[0], _OPTION_LETTERS[texts.index(refs[0])]]
    raise ValueError(f"{scorer}: reference {refs[0]!r} is neither a letter A-D nor one of {texts}")


def longbook_choice_score(
    prediction: str, answers: Sequence[str], options: Sequence[str] | None = None, **_: object
) -> float:
    """longbook_choice_eng, official rule over the label ``[option text, letter]``.

    1. The stripped prediction's *first character*, when it is A-D, is the answer: so
       "Answer: B" and "Based on the text ..." both read as their first letter (quirk).
    2. A prediction equal to the option text or the letter is correct.
    3. After turning ``\\n " ' . , ? ! { }`` into spaces: the text after the first cue found of
       "answer is:", "answer:", "answer is", "option is" (tried in that order, case-sensitive,
       one character skipped) must start with the text or the letter.
    4. Else the first word that is a substring of "ABCD" ("A", but also "BC") decides.
    """
    label = choice_label(answers, options, "longbook_choice_score")
    pred = prediction.strip()
    if pred == "":
        return 0.0
    if pred[0] in _OPTION_LETTERS:
        return float(pred[0] in label)
    if pred in label:
        return 1.0
    pred = _collapse_spaces(_replace_all(pred, _CHOICE_SEPARATORS))
    for prefix in _CHOICE_PREFIXES:
        idx = pred.find(prefix)
        if idx == -1:
            continue
        if len(pred) < idx + len(prefix) + 1:
            return 0.0
        after = pred[idx + len(prefix) + 1 :]
        return float(any(after.startswith(s) for s in label))
    for word in pred.split():
        if word in _OPTION_LETTERS:
            return float(word in label)
    return 0.0


def option_choice_score(
    prediction: str, answers: Sequence[str], options: Sequence[str] | None = None, **_: object
) -> float:
    """Former name of :func:`longbook_choice_score` (kept for callers)."""
    return longbook_choice_score(prediction, answers, options=options)


def code_debug_score(
    prediction: str, answers: Sequence[str], options: Sequence[str] | None = None, **_: object
) -> float:
    """code_debug, official rule over the label ``[function name, letter]``.

    1. The stripped prediction starting with "B." / "B:" (the right letter) is correct.
    2. After turning ``\\n ` ' " - *`` and "Option"/"option" into spaces: the text after the
       first cue found of "answer is:", "is:", "answer:", "correct option is:" (in that order,
       one character skipped) must start with the letter or the function name.
    3. Otherwise 0: a bare "B" or "(B)" scores 0 (quirk).
    """
    label = choice_label(answers, options, "code_debug_score")
    fn_name, letter = label[0], label[1]
    pred = prediction.strip()
    if pred[:2] in (f"{letter}.", f"{letter}:"):
        return 1.0
    pred = _collapse_spaces(_replace_all(pred.strip(), _CODE_DEBUG_SEPARATORS))
    for prefix in _CODE_DEBUG_PREFIXES:
        idx = pred.find(prefix)
        if idx == -1:
            continue
        if len(pred) < idx + len(prefix) + 1:
            return 0.0
        after = pred[idx + len(prefix) + 1 :]
        return float(after.startswith(letter) or after.startswith(fn_name))
    return 0.0
