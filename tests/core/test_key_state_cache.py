"""The incremental key-feature cache of the part-B maskers: reuse, rebuild, anchors."""

from __future__ import annotations

from typing import Any

import torch

from sah_core.maskers.key_state_cache import (
    incremental_key_features,
    quantize_symmetric,
    valid_mean,
)


class Recorder:
    """A per-key (or per-page) feature function that records where its segments start."""

    def __init__(self, keys: torch.Tensor, unit: int = 1) -> None:
        self.keys = keys
        self.unit = unit
        self.lengths: list[int] = []

    def __call__(self, segment: torch.Tensor) -> torch.Tensor:
        self.lengths.append(segment.shape[2])
        n = segment.shape[2]
        pad = (-n) % self.unit
        padded = torch.nn.functional.pad(segment, (0, 0, 0, pad))
        return padded.view(*segment.shape[:2], -1, self.unit, segment.shape[3]).sum(3)


def reference(keys: torch.Tensor, unit: int) -> torch.Tensor:
    return Recorder(keys, unit)(keys)


def test_decode_computes_only_new_keys_and_last_page() -> None:
    keys = torch.randn(2, 3, 20, 4, generator=torch.Generator().manual_seed(0))
    for unit in (1, 4):
        state: dict[str, Any] = {}
        rec = Recorder(keys, unit)
        for length in (10, 11, 12, 13, 17):
            out = incremental_key_features(state, "f", keys[:, :, :length], rec, unit=unit)
            assert torch.allclose(out, reference(keys[:, :, :length], unit))
        # first call: everything; then only from the last complete item on
        if unit == 1:
            assert rec.lengths == [10, 1, 1, 1, 4]
        else:
            assert rec.lengths == [10, 3, 4, 1, 5]
        # the same keys again: nothing to compute
        incremental_key_features(state, "f", keys[:, :, :17], rec, unit=unit)
        assert len(rec.lengths) == 5


def test_changed_keys_rebuild_and_anchor_is_reused() -> None:
    gen = torch.Generator().manual_seed(1)
    context = torch.randn(1, 2, 8, 4, generator=gen)
    first = torch.cat([context, torch.randn(1, 2, 3, 4, generator=gen)], dim=2)
    second = torch.cat([context, torch.randn(1, 2, 5, 4, generator=gen)], dim=2)
    state: dict[str, Any] = {}
    rec = Recorder(context)
    incremental_key_features(state, "f", context, rec)
    incremental_key_features(state, "f", first, rec)
    # a second question over the same context: only its own keys are new
    out = incremental_key_features(state, "f", second, rec)
    assert torch.allclose(out, reference(second, 1))
    assert rec.lengths == [8, 3, 5]
    # unrelated keys: full rebuild
    other = torch.randn(1, 2, 9, 4, generator=gen)
    out = incremental_key_features(state, "f", other, rec)
    assert torch.allclose(out, reference(other, 1))
    assert rec.lengths[-1] == 9
    # a shorter key tensor than the anchor: full rebuild too
    out = incremental_key_features(state, "f", other[:, :, :5], rec)
    assert torch.allclose(out, reference(other[:, :, :5], 1)) and rec.lengths[-1] == 5


def test_quantize_symmetric() -> None:
    values = torch.tensor([[0.5, -1.0, 0.26]])
    assert torch.equal(quantize_symmetric(values, 32), values)
    q = quantize_symmetric(values, 3)  # 3 levels each side: step 1/3
    assert torch.allclose(q, torch.tensor([[2 / 3, -1.0, 1 / 3]]))
    assert bool((quantize_symmetric(values, 3, rounding="floor") <= values + 1e-7).all())
    assert bool((quantize_symmetric(values, 3, rounding="ceil") >= values - 1e-7).all())


def test_valid_mean_ignores_padded_entries() -> None:
    x = torch.tensor([[1.0, 3.0, 100.0], [2.0, 4.0, 6.0]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    assert valid_mean(x, valid, dim=1).tolist() == [2.0, 4.0]
    assert torch.equal(valid_mean(x, None, dim=1), x.mean(dim=1))
