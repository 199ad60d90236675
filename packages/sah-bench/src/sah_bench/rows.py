"""The common row schema every benchmark emits, and grouping rows into requests.

A row is a plain dict with at least :data:`COMMON_FIELDS`; any further keys (``all_classes``,
``options``, ``length``...) are passed to the subset's scorer as keyword arguments. Rows that
share a context (and answer prefix) become one multi-question :class:`~sah_protocol.Request`, so
the adapter prefills that context once.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sah_protocol import Request

COMMON_FIELDS: tuple[str, ...] = (
    "context",
    "question",
    "answer_prefix",
    "answers",
    "task",
    "max_new_tokens",
)


def as_answer_list(value: Any, *, list_repr: bool = False) -> list[str]:
    """References as a list of strings, whatever container the data file used.

    Lists, tuples and numpy arrays (what ``.to_pandas()`` makes of a list column) become a list
    of their items as strings; a plain string is one reference. With ``list_repr`` a string that
    holds a Python list literal (``"['4']"``, as AIME 2025's ``answer`` may be stored) is parsed
    into its items; it is off by default because a reference may itself look like a list (a
    line of code, say).
    """
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        if list_repr:
            parsed = _literal_list(value)
            if parsed is not None:
                return parsed
        return [value]
    if isinstance(value, Mapping):
        return [str(v) for v in value.values()]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]


def _literal_list(text: str) -> list[str] | None:
    """The items of a list/tuple literal such as ``"['4', '5']"``, else None."""
    stripped = text.strip()
    if not stripped.startswith(("[", "(")):
        return None
    try:
        parsed = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(parsed, list | tuple):
        return None
    return [str(v) for v in parsed]


def validate_row(row: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Check ``row`` against the common schema and return a normalised copy."""
    missing = [name for name in COMMON_FIELDS if name not in row]
    if missing:
        raise ValueError(
            f"{where}: row is missing field(s) {missing}; every row needs {list(COMMON_FIELDS)}"
        )
    out = dict(row)
    for name in ("context", "question", "answer_prefix", "task"):
        if not isinstance(out[name], str):
            raise ValueError(f"{where}: field {name!r} must be a str, got {out[name]!r:.80}")
    out["answers"] = as_answer_list(out["answers"])
    try:
        out["max_new_tokens"] = int(out["max_new_tokens"])
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: max_new_tokens must be a positive int, got {out['max_new_tokens']!r}"
        ) from None
    if out["max_new_tokens"] <= 0:
        raise ValueError(
            f"{where}: max_new_tokens must be a positive int, got {out['max_new_tokens']}"
        )
    return out


def row_extras(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's fields beyond the common schema (passed to the scorer)."""
    return {k: v for k, v in row.items() if k not in COMMON_FIELDS}


@dataclass
class RequestGroup:
    """Rows that share one context: asked together as one request."""

    request_id: str
    context: str
    answer_prefix: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_new_tokens(self) -> int:
        return max(int(r["max_new_tokens"]) for r in self.rows)

    def to_request(self) -> Request:
        return Request(
            context=self.context,
            questions=[r["question"] for r in self.rows],
            answer_prefix=self.answer_prefix,
        )


def _digest(*parts: str) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def group_rows(rows: Sequence[Mapping[str, Any]]) -> list[RequestGroup]:
    """Group rows by (context, answer_prefix), keeping first-appearance order.

    Request ids are ``<position>-<digest of context>``: stable across runs for the same data,
    which is what lets a resumed run recognise the requests it already answered.
    """
    groups: dict[tuple[str, str], RequestGroup] = {}
    for row in rows:
        key = (str(row["context"]), str(row["answer_prefix"]))
        group = groups.get(key)
        if group is None:
            rid = f"{len(groups):05d}-{_digest(*key)}"
            group = RequestGroup(request_id=rid, context=key[0], answer_prefix=key[1])
            groups[key] = group
        group.rows.append(dict(row))
    return list(groups.values())
