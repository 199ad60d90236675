"""The request a model adapter answers and the response it returns."""

from __future__ import annotations

from dataclasses import dataclass


def _check_text(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a str, got {type(value).__name__}: {value!r:.80}")


@dataclass(frozen=True)
class Request:
    """One long context and the question(s) to ask about it.

    ``questions`` is a single string or a non-empty list of strings; the adapter prefills the
    context once and answers every question against it. ``answer_prefix`` is appended to each
    question (e.g. ``"Answer:"``).
    """

    context: str
    questions: str | list[str]
    answer_prefix: str = ""

    def __post_init__(self) -> None:
        _check_text("Request.context", self.context)
        _check_text("Request.answer_prefix", self.answer_prefix)
        if isinstance(self.questions, list):
            if not self.questions:
                raise ValueError("Request.questions must not be an empty list; give at least one")
            for i, q in enumerate(self.questions):
                _check_text(f"Request.questions[{i}]", q)
            # Freeze a private copy so later mutation of the caller's list cannot leak in.
            object.__setattr__(self, "questions", list(self.questions))
        else:
            _check_text("Request.questions", self.questions)

    @property
    def question_list(self) -> list[str]:
        """The questions as a list, whatever form they were given in."""
        return list(self.questions) if isinstance(self.questions, list) else [self.questions]

    @property
    def is_batched(self) -> bool:
        return isinstance(self.questions, list)


@dataclass(frozen=True)
class RequestResponse:
    """The answers to a :class:`Request`: a ``str`` for a single question, a list for a list."""

    responses: str | list[str]

    def __post_init__(self) -> None:
        if isinstance(self.responses, list):
            for i, r in enumerate(self.responses):
                _check_text(f"RequestResponse.responses[{i}]", r)
            object.__setattr__(self, "responses", list(self.responses))
        else:
            _check_text("RequestResponse.responses", self.responses)

    @classmethod
    def for_request(cls, request: Request, answers: list[str]) -> RequestResponse:
        """Build the response that mirrors the question type of ``request``."""
        expected = len(request.question_list)
        if len(answers) != expected:
            raise ValueError(
                f"answers has {len(answers)} entries but the request has {expected} question(s)"
            )
        return cls(list(answers) if request.is_batched else answers[0])

    @property
    def response_list(self) -> list[str]:
        return list(self.responses) if isinstance(self.responses, list) else [self.responses]
