"""docs/maskers.md must cover every masker of the ``sah.maskers`` entry-point group.

A registered masker without a ``## <ConfigClassName>`` section, a config field not named in
its section, a documented default that differs from the dataclass default, or a section for
a masker that is no longer registered fails here -- so the reference cannot drift.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

MASKERS_DOC = Path(__file__).resolve().parents[2] / "docs" / "maskers.md"
GROUP = "sah.maskers"
# What every section must tell a reader (issue 7: paper, fields, state, cost).
REQUIRED_PARTS = ("Paper:", "State", "Cost:")


def split_sections(markdown: str) -> dict[str, str]:
    """``## Heading`` -> the text up to the next ``## `` heading."""
    sections: dict[str, str] = {}
    parts = re.split(r"^## +(.+?)\s*$", markdown, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[heading.strip()] = body
    return sections


def documented_defaults(section: str) -> dict[str, str]:
    """Field -> default cell of the section's field table (``| `field` | ... | default |``)."""
    defaults: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"^\|\s*`(\w+)`\s*\|.*\|\s*([^|]+?)\s*\|\s*$", line)
        if match:
            defaults[match.group(1)] = match.group(2)
    return defaults


def expected_default(field: dataclasses.Field[Any]) -> str | None:
    """How a field's default is written in the table (None: no plain default)."""
    if field.default is dataclasses.MISSING:
        return None
    value = field.default
    written = json.dumps(value) if isinstance(value, str) else repr(value)
    return f"`{written}`"


def doc_problems(config_type: type, sections: dict[str, str]) -> list[str]:
    """Everything wrong with the documentation of one masker config (empty list = fine)."""
    name = config_type.__name__
    section = sections.get(name)
    if section is None:
        return [f"docs/maskers.md has no '## {name}' section"]
    problems = [
        f"section '{name}' does not say {part!r}" for part in REQUIRED_PARTS if part not in section
    ]
    defaults = documented_defaults(section)
    for field in dataclasses.fields(config_type):
        if f"`{field.name}`" not in section:
            problems.append(f"section '{name}' does not mention config field `{field.name}`")
            continue
        want = expected_default(field)
        if field.name in defaults and want is not None and defaults[field.name] != want:
            problems.append(
                f"section '{name}': field `{field.name}` documented default "
                f"{defaults[field.name]} differs from the code's {want}"
            )
    return problems


def registered_config_types() -> dict[str, type]:
    """Config class name -> config class, for every masker entry point."""
    found: dict[str, type] = {}
    for ep in entry_points(group=GROUP):
        masker = ep.load()
        config_type = masker.config_type
        found[config_type.__name__] = config_type
    return found


def test_entry_point_group_is_not_empty() -> None:
    assert len(registered_config_types()) >= 13


@pytest.mark.parametrize("config_name", sorted(registered_config_types()))
def test_registered_masker_is_documented(config_name: str) -> None:
    sections = split_sections(MASKERS_DOC.read_text(encoding="utf-8"))
    problems = doc_problems(registered_config_types()[config_name], sections)
    assert not problems, "\n".join(problems)


def test_every_masker_section_is_a_registered_masker() -> None:
    sections = split_sections(MASKERS_DOC.read_text(encoding="utf-8"))
    stale = sorted(set(sections) - set(registered_config_types()))
    assert not stale, f"docs/maskers.md documents maskers that are not registered: {stale}"


# ------------------------------------------------------------------ the checker itself


@dataclasses.dataclass
class _ToyConfig:
    window: int = 4
    mode: str = "fast"


_GOOD_DOC = """
# Maskers

## _ToyConfig

Paper: Someone, "A Toy", 2020.

| field | type | allowed | default |
|---|---|---|---|
| `window` | int | `>= 1` | `4` |
| `mode` | str | one of `fast`, `slow` | `"fast"` |

State: none.

Cost: O(1).
"""


def test_checker_accepts_a_complete_section() -> None:
    assert doc_problems(_ToyConfig, split_sections(_GOOD_DOC)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda doc: doc.replace("## _ToyConfig", "## Other"), "no '## _ToyConfig' section"),
        (lambda doc: doc.replace("| `mode` |", "| mode |"), "config field `mode`"),
        (lambda doc: doc.replace("`4` |", "`8` |"), "documented default `8`"),
        (lambda doc: doc.replace("Cost: O(1).", ""), "'Cost:'"),
        (lambda doc: doc.replace("Paper:", "Source:"), "'Paper:'"),
    ],
)
def test_checker_reports_what_is_missing(edit: Any, expected: str) -> None:
    problems = doc_problems(_ToyConfig, split_sections(edit(_GOOD_DOC)))
    assert any(expected in problem for problem in problems), problems
