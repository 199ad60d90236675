"""Efficient Quest against its selection built explicitly, one query row at a time."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from sah_core.kernels import (
    EfficientQuestAttention,
    QuestEfficientConfig,
    QuestPageSummaries,
    quest_select_indices,
)


def naive_quest_selection(
    queries: torch.Tensor, keys: torch.Tensor, config: QuestEfficientConfig
) -> list[list[list[list[int]]]]:
    """Selected key indices per [batch][list head][query row], from the Quest definition."""
    batch, num_q_heads, q_len, _ = queries.shape
    num_kv_heads, kv_len = keys.shape[1], keys.shape[2]
    group = num_q_heads // num_kv_heads
    size = config.page_size

    def resolve(value: int | float) -> int:
        return value if isinstance(value, int) else math.ceil(value * kv_len)

    sink, local = resolve(config.sink_tokens), resolve(config.local_tokens)
    budget = resolve(config.token_budget)
    # the authors' page rule: the budget rounded down to whole pages, at least three
    pages_to_pick = max(3, budget // size) if budget > 0 else 0
    num_pages = math.ceil(kv_len / size)

    def bound(b: int, h: int, q: int, page: int) -> float:
        page_keys = keys[b, h // group, page * size : (page + 1) * size].double()
        low, high = page_keys.min(dim=0).values, page_keys.max(dim=0).values
        query = queries[b, h, q].double()
        return float(torch.maximum(query * low, query * high).sum())

    per_kv = config.group_reduction != "none"
    out: list[list[list[list[int]]]] = []
    for b in range(batch):
        heads_out = []
        for list_head in range(num_kv_heads if per_kv else num_q_heads):
            rows_out = []
            for q in range(q_len):
                visible = kv_len - q_len + q + 1
                always = {t for t in range(visible) if t < sink or t >= visible - local}
                scores = {}
                for page in range(num_pages):
                    tokens = range(page * size, min((page + 1) * size, visible))
                    if not any(t not in always for t in tokens):
                        continue
                    if per_kv:
                        heads = range(list_head * group, (list_head + 1) * group)
                        values = [bound(b, h, q, page) for h in heads]
                        reduce = max if config.group_reduction == "max" else sum
                        scores[page] = reduce(values)
                    else:
                        scores[page] = bound(b, list_head, q, page)
                best = sorted(scores, key=lambda page: -scores[page])[:pages_to_pick]
                chosen = set(always)
                for page in best:
                    chosen.update(range(page * size, min((page + 1) * size, visible)))
                rows_out.append(sorted(chosen))
            heads_out.append(rows_out)
        out.append(heads_out)
    return out


def dense_masked_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selection: list[list[list[list[int]]]],
    scaling: float,
) -> torch.Tensor:
    batch, num_q_heads, q_len, _ = queries.shape
    group = num_q_heads // keys.shape[1]
    list_heads = len(selection[0])
    allowed = torch.zeros(batch, num_q_heads, q_len, keys.shape[2], dtype=torch.bool)
    for b in range(batch):
        for h in range(num_q_heads):
            for q in range(q_len):
                row = selection[b][h if list_heads == num_q_heads else h // group][q]
                allowed[b, h, q, row] = True
    keys_h = keys.repeat_interleave(group, dim=1).double()
    values_h = values.repeat_interleave(group, dim=1).double()
    logits = (queries.double() @ keys_h.transpose(-1, -2)) * scaling
    probabilities = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return probabilities @ values_h


CONFIGS = {
    "per-head": QuestEfficientConfig(page_size=4, token_budget=10, sink_tokens=2, local_tokens=5),
    "group-max": QuestEfficientConfig(
        page_size=8, token_budget=0.2, sink_tokens=3, local_tokens=0.1, group_reduction="max"
    ),
    "group-sum-no-sink": QuestEfficientConfig(
        page_size=4, token_budget=12, sink_tokens=0, local_tokens=3, group_reduction="sum"
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("q_len", [1, 3])
def test_selection_matches_explicit_quest(name: str, q_len: int, make_qkv: Any) -> None:
    config = CONFIGS[name]
    generator = torch.Generator().manual_seed(q_len + len(name))
    queries, keys, _ = make_qkv(2, 4, 2, q_len, 45, 8, torch.float32, generator)
    summaries = QuestPageSummaries(config.page_size)
    summaries.update(keys)
    indices, weights = quest_select_indices(queries, summaries, config)
    expected = naive_quest_selection(queries, keys, config)
    assert indices.shape[:3] == (2, len(expected[0]), q_len)
    for b, heads in enumerate(expected):
        for h, rows in enumerate(heads):
            for q, row in enumerate(rows):
                got = indices[b, h, q]
                assert got[: len(row)].tolist() == row
                assert bool((got[len(row) :] == -1).all())
                assert weights[b, h, q].sum().item() == len(row)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_attention_matches_explicit_selection(
    name: str, triton_device: torch.device, make_qkv: Any, tol: Any
) -> None:
    config = CONFIGS[name]
    generator = torch.Generator().manual_seed(len(name))
    queries, keys, values = make_qkv(1, 8, 2, 1, 60, 16, torch.float32, generator)
    expected = dense_masked_attention(
        queries, keys, values, naive_quest_selection(queries, keys, config), 0.3
    )
    reference = EfficientQuestAttention(config, backend="reference")
    torch.testing.assert_close(
        reference.attend(queries, keys, values, 0.3).double(), expected, atol=1e-5, rtol=1e-5
    )
    kernel = EfficientQuestAttention(config, backend="triton")
    on_device = [t.to(triton_device) for t in (queries, keys, values)]
    torch.testing.assert_close(
        kernel.attend(*on_device, 0.3).cpu().double(), expected, atol=1e-5, rtol=1e-5
    )


def test_incremental_summaries_equal_a_rebuild(make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(2)
    _, keys, _ = make_qkv(1, 2, 2, 1, 70, 8, torch.bfloat16, generator)
    attention = EfficientQuestAttention(QuestEfficientConfig(page_size=8))
    state: dict[str, Any] = {}
    for length in (5, 16, 17, 18, 40, 70):
        attention.summaries(keys[:, :, :length], state)
    fresh = QuestPageSummaries(8)
    fresh.update(keys)
    kept = state["quest_page_summaries"]
    assert kept.num_tokens == 70 and kept.num_pages == 9
    assert torch.equal(kept.key_min, fresh.key_min)
    assert torch.equal(kept.key_max, fresh.key_max)
    # A shorter cache (a new request) rebuilds instead of keeping stale pages.
    attention.summaries(keys[:, :, :10] + 1, state)
    rebuilt = QuestPageSummaries(8)
    rebuilt.update(keys[:, :, :10] + 1)
    assert torch.equal(state["quest_page_summaries"].key_max, rebuilt.key_max)


def test_upper_bound_holds_for_every_key(make_qkv: Any) -> None:
    generator = torch.Generator().manual_seed(8)
    queries, keys, _ = make_qkv(1, 4, 2, 1, 37, 8, torch.float32, generator)
    config = QuestEfficientConfig(page_size=4, group_reduction="none")
    summaries = QuestPageSummaries(config.page_size)
    summaries.update(keys)
    from sah_core.kernels import quest_page_upper_bounds

    bounds = quest_page_upper_bounds(queries, summaries.key_min, summaries.key_max)
    scores = torch.einsum("bhgqd,bhkd->bhgqk", queries.view(1, 2, 2, 1, 8), keys)
    page_of_key = torch.arange(37) // 4
    assert bool((scores <= bounds[..., page_of_key] + 1e-5).all())


@pytest.mark.parametrize(
    ("field", "value"),
    [("page_size", 0), ("token_budget", 1.5), ("sink_tokens", -1), ("group_reduction", "avg")],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        QuestEfficientConfig(**{field: value})  # type: ignore[arg-type]


def test_page_summaries_and_selection_ignore_padded_keys() -> None:
    """Left-padded keys never enter a page bound (their values change nothing), a page of
    padding only is never picked, and no padded key is selected."""
    gen = torch.Generator().manual_seed(3)
    b, hq, hkv, k, d, size = 2, 4, 2, 40, 8, 4
    queries = torch.randn(b, hq, 1, d, generator=gen)
    keys = torch.randn(b, hkv, k, d, generator=gen)
    valid = torch.ones(b, k, dtype=torch.bool)
    valid[1, :10] = False  # row 1: 10 pads = pages 0, 1 fully and page 2 half padded
    config = QuestEfficientConfig(page_size=size, token_budget=12, sink_tokens=0, local_tokens=4)
    picks = []
    for pad_value in (1e4, -1e4):
        padded = keys.clone()
        padded[1, :, :10] = pad_value
        summaries = QuestPageSummaries(size)
        summaries.update(padded, valid)
        for page in range(k // size):  # naive min/max over the page's valid keys only
            for row in range(b):
                own = [t for t in range(page * size, (page + 1) * size) if valid[row, t]]
                if not own:
                    assert bool((summaries.key_min[row, :, page] > 0).all())
                    continue
                page_keys = padded[row, :, own]
                assert torch.equal(summaries.key_min[row, :, page], page_keys.amin(1))
                assert torch.equal(summaries.key_max[row, :, page], page_keys.amax(1))
        indices, weights = quest_select_indices(queries, summaries, config, valid)
        chosen = indices[1][indices[1] >= 0]
        assert chosen.numel() > 0 and bool((chosen >= 10).all())
        assert torch.equal(weights > 0, indices >= 0)
        picks.append(indices)
    assert torch.equal(picks[0], picks[1])
