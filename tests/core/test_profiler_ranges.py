"""ResearchAttention labels its parts with profiler ranges, and only while a profiler runs."""

from __future__ import annotations

import pytest
import torch

from sah_core import ResearchAttention, ResearchAttentionConfig
from sah_core.maskers.local import LocalMaskerConfig
from sah_core.maskers.sink import SinkMaskerConfig


def _attention() -> ResearchAttention:
    config = ResearchAttentionConfig(
        masker_configs=[SinkMaskerConfig(sink_size=2), LocalMaskerConfig(window_size=3)]
    )
    return ResearchAttention.create_from_config(config)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 1, 8, generator=gen)
    k = torch.randn(1, 2, 12, 8, generator=gen)
    return q, k, torch.randn(1, 2, 12, 8, generator=gen)


def test_no_range_is_entered_without_a_profiler(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str) -> None:
        raise AssertionError(f"record_function({name!r}) entered without a profiler")

    monkeypatch.setattr(torch.profiler, "record_function", refuse)
    q, k, v = _inputs()
    out, _ = _attention().custom_attention(None, q, k, v, None, 0.5, layer_idx=0)
    assert out.shape == (1, 1, 2, 8)


def test_ranges_nest_under_the_layer_call() -> None:
    q, k, v = _inputs()
    attention = _attention()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        attention.custom_attention(None, q, k, v, None, 0.5, layer_idx=3)
    events = {e.name: e for e in prof.events()}
    call = events["sah.call[layer=3]"]
    for name in ("sah.plan", "sah.masker[0]:sink", "sah.masker[1]:local", "sah.attention"):
        event = events[name]
        assert call.time_range.start <= event.time_range.start
        assert event.time_range.end <= call.time_range.end
    markers = [n for n in events if n.startswith("sah.backend:")]
    assert len(markers) == 1 and markers[0].startswith("sah.backend:reference")
    attention_range, marker = events["sah.attention"], events[markers[0]]
    assert attention_range.time_range.start <= marker.time_range.start
    assert marker.time_range.end <= attention_range.time_range.end
