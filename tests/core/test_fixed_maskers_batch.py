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
