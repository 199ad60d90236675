"""Docs that must not drift from the code: diagram copies and the masker reference."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("source", ["architecture.mmd", "data_flow.mmd"])
def test_embedded_diagram_matches_its_source(source: str) -> None:
    diagram = (DOCS / source).read_text()
    assert f"```mermaid\n{diagram}```" in (DOCS / "architecture.md").read_text()


def _python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_writing_a_masker_example_runs_and_selects_the_largest_norm_keys() -> None:
    import torch

    masker_block, usage_block = _python_blocks("writing_a_masker.md")[:2]
    assert len(masker_block.strip().splitlines()) < 30, "the example must stay under 30 lines"
    namespace: dict[str, object] = {"__name__": "writing_a_masker_example"}
    exec(compile(masker_block + usage_block, "writing_a_masker.md", "exec"), namespace)
    attention, queries, keys, values = (
        namespace[n] for n in ("attention", "queries", "keys", "values")
    )
    mask = attention.compute_mask(queries, keys, values, None, 0.25, {}, 0)  # type: ignore[attr-defined]
    picked = mask.get_dense_mask()[0, :, 0] > 0  # [Hq, K]
    norms = keys[0].norm(dim=-1)  # type: ignore[attr-defined]  # [Hkv, K]
    for head in range(4):
        kv = head // 2
        others = [j for j in range(64) if j >= 4]  # the sink keeps keys 0..3
        best = sorted(others, key=lambda j: -float(norms[kv, j]))[:16]  # 0.25 * 64
        assert sorted(picked[head].nonzero().flatten().tolist()) == [0, 1, 2, 3, *sorted(best)]
    assert isinstance(namespace["out"], torch.Tensor)
