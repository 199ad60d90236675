"""Docs that must not drift from the code: diagram copies and the masker reference."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("source", ["architecture.mmd", "data_flow.mmd"])
def test_embedded_diagram_matches_its_source(source: str) -> None:
    diagram = (DOCS / source).read_text()
    assert f"```mermaid\n{diagram}```" in (DOCS / "architecture.md").read_text()
