"""OracleTopP's ``top_p_of`` modes against the mass they promise (the plain mode's row-loop
reference is in test_maskers.py)."""

from __future__ import annotations

import naive_refs_b as refs
import pytest
import torch

from sah_core import Mask, OracleTopPMaskerConfig
from sah_core.maskers.oracle_top_p import OracleTopPMasker


def softmax_rows(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    logits = (queries.double() @ keys.double().transpose(-1, -2)) * queries.shape[-1] ** -0.5
    return torch.softmax(logits, dim=-1)


@pytest.mark.parametrize("top_p", [0.3, 0.7])
def test_remaining_mode_covers_top_p_of_what_is_left(top_p: float) -> None:
    queries, keys, values = refs.make_qkv(2, 1, 1, 1, 6, 40, 8)
    queries = queries * 3  # peaked rows
    sink = Mask.from_index(torch.arange(3).expand(1, 1, 6, 3), None, (1, 1, 6, 40))
    probs = softmax_rows(queries, keys)[0, 0]
    prev_mass = probs[:, :3].sum(-1)
    for mode in ("all", "remaining"):
        masker = OracleTopPMasker(OracleTopPMaskerConfig(top_p=top_p, top_p_of=mode))
        chosen = refs.selected(refs.call_masker(masker, queries, keys, values, previous=sink))
        added = chosen[0, 0].clone()
        added[:, :3] = False
        new_mass = (probs * added).sum(-1)
        target = top_p - prev_mass if mode == "all" else top_p * (1 - prev_mass)
        assert bool((new_mass >= target - 1e-6).all())
        # minimal: dropping the lightest added key falls short of the target
        for row in range(6):
            if bool(added[row].any()) and float(target[row]) > 0:
                lightest = float(probs[row][added[row]].min())
                assert float(new_mass[row]) - lightest < float(target[row]) + 1e-6


def test_top_p_of_is_validated() -> None:
    with pytest.raises(ValueError, match="top_p_of"):
        OracleTopPMaskerConfig(top_p=0.5, top_p_of="rest")
