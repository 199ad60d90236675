"""Sink and Local windows in a padded batch select, per row, what the row selects alone
(sizes as counts and as fractions of the row's own key count), in the question prefill
(the per-row loop) and in decode (one key range per row, batched)."""

from __future__ import annotations

import naive_refs_b as refs
import pytest

from sah_core import LocalMaskerConfig, ResearchMasker, SinkMaskerConfig
from sah_core.maskers.base import FixedMasker


@pytest.mark.parametrize(
    "config",
    [SinkMaskerConfig(3), SinkMaskerConfig(0.2), LocalMaskerConfig(4), LocalMaskerConfig(0.3)],
)
def test_fixed_windows_are_batch_safe(monkeypatch, config) -> None:
    used = []
    original = FixedMasker._per_row_span_mask

    def spy(self, call, dtype):
        out = original(self, call, dtype)
        used.append(out is not None)
        return out

    monkeypatch.setattr(FixedMasker, "_per_row_span_mask", spy)
    refs.check_batch_safe(lambda: ResearchMasker.create_from_config(config), steps=4)
    assert any(used)  # the decode steps took the batched range path


@pytest.mark.parametrize(("sink", "window"), [(3, 4), (5, 6)])
def test_sink_and_local_union_in_a_padded_decode_step(sink: int, window: int) -> None:
    """Sink + Local over a padded batch at a decode step: each row holds its own first
    ``sink`` and last ``window`` real keys, once each (rows short enough for the two
    windows to overlap included: the union must fold them)."""
    import torch

    from sah_core import ResearchAttention, ResearchAttentionConfig

    stack = ResearchAttention.create_from_config(
        ResearchAttentionConfig(masker_configs=[SinkMaskerConfig(sink), LocalMaskerConfig(window)])
    )
    gen = torch.Generator().manual_seed(2)
    b, hq, hkv, d, k = 3, 4, 2, 8, 16
    real = torch.ones(b, k, dtype=torch.bool)
    real[1, 2:9] = False  # 9 real keys: windows apart
    real[2, 1:10] = False  # 7 real keys: the windows overlap
    mask = torch.where(real, 0.0, torch.finfo(torch.float32).min)[:, None, None, :]
    queries = torch.randn(b, hq, 1, d, generator=gen)
    keys = torch.randn(b, hkv, k, d, generator=gen)
    call = stack.plan(queries, keys, keys.clone(), mask, d**-0.5, 0.0, {}, 0)
    indices, weights = stack.mask_for(call).index_view()
    for row in range(b):
        cols = real[row].nonzero().flatten().tolist()
        expected = sorted(set(cols[:sink] + cols[-window:]))
        for head in range(hq):
            held = indices[row, head, 0]
            kept = (
                held[held >= 0]
                if weights is None
                else held[(held >= 0) & (weights[row, head, 0] > 0)]
            )
            assert sorted(kept.tolist()) == expected, (row, head)  # each key once
