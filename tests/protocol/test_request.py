"""Request / RequestResponse: validation, immutability and the question/response mirror."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sah_protocol import Request, RequestResponse


def test_single_question_roundtrip() -> None:
    req = Request(context="ctx", questions="q?", answer_prefix="A:")
    assert req.question_list == ["q?"]
    assert not req.is_batched
    resp = RequestResponse.for_request(req, ["yes"])
    assert resp.responses == "yes"
    assert resp.response_list == ["yes"]


def test_list_questions_mirror_list_response() -> None:
    req = Request(context="ctx", questions=["a", "b"])
    resp = RequestResponse.for_request(req, ["1", "2"])
    assert resp.responses == ["1", "2"]


def test_list_of_one_stays_a_list() -> None:
    req = Request(context="ctx", questions=["only"])
    assert RequestResponse.for_request(req, ["x"]).responses == ["x"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"context": 3, "questions": "q"}, "Request.context"),
        ({"context": "c", "questions": []}, "Request.questions"),
        ({"context": "c", "questions": ["ok", 5]}, "Request.questions[1]"),
        ({"context": "c", "questions": None}, "Request.questions"),
        ({"context": "c", "questions": "q", "answer_prefix": None}, "Request.answer_prefix"),
    ],
)
def test_invalid_request_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Request(**kwargs)  # type: ignore[arg-type]


def test_invalid_response_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"RequestResponse.responses\[0\]"):
        RequestResponse([1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"RequestResponse\.responses"):
        RequestResponse(None)  # type: ignore[arg-type]


def test_answer_count_must_match() -> None:
    req = Request(context="c", questions=["a", "b"])
    with pytest.raises(ValueError, match="2 question"):
        RequestResponse.for_request(req, ["only one"])


def test_frozen_and_detached_from_caller_list() -> None:
    questions = ["a", "b"]
    req = Request(context="c", questions=questions)
    questions.append("c")
    assert req.question_list == ["a", "b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.context = "other"  # type: ignore[misc]


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_response_mirrors_any_question_list(questions: list[str]) -> None:
    req = Request(context="c", questions=questions)
    answers = [q[::-1] for q in questions]
    assert RequestResponse.for_request(req, answers).response_list == answers
