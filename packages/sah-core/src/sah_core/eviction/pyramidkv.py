"""PyramidKV: SnapKV scores with layer-wise budgets that shrink with depth.

Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
Funneling", arXiv:2406.02069. Lower layers attend broadly and keep more keys, higher layers
fewer; the budgets form an arithmetic sequence whose mean is the uniform budget, so the whole
cache holds what SnapKV at ``budget`` holds. With ``a = budget - window_size`` (the voted part
of the mean budget), the first layer gets ``2a - a/beta`` and the last ``a/beta`` voted keys
(the first is capped at the ``K - window`` keys there are, the last then raised to keep the
mean), plus the window, as in the authors' KVCache-Factory code.

Differs from the original: the step between layers is ``(max - min) / (L - 1)`` (kvpress),
so the mean is exactly ``a``; the original divides by ``L`` with integer division.
"""

from __future__ import annotations

import dataclasses

from sah_core.eviction.base import EvictionInputs, KeepPlan
from sah_core.eviction.snapkv import SnapKV, SnapKVConfig
from sah_core.maskers.base import check_int


@dataclasses.dataclass
class PyramidKVConfig(SnapKVConfig):
    """SnapKV's fields; ``budget`` is the mean over layers; ``beta`` the pyramid's
    steepness (last layer keeps ``1/beta`` of the mean voted budget)."""

    type_tag = "pyramidkv"

    beta: int = 20

    def validate(self) -> None:
        super().validate()
        check_int(self, "beta", self.beta, low=1, high=10**6)


def pyramid_budget(
    mean_budget: int, key_len: int, window: int, beta: int, layer: int, num_layers: int
) -> int:
    """Keys kept by ``layer`` (window included) for a mean budget of ``mean_budget``."""
    w = min(window, key_len)
    voted = mean_budget - w
    if voted <= 0 or num_layers <= 1:
        return min(mean_budget, key_len)
    low = voted / beta
    high = 2 * voted - low
    if high > key_len - w:
        high = float(key_len - w)
        low = 2 * voted - high
    step = (high - low) / (num_layers - 1)
    return max(1, min(key_len, round(high - layer * step) + w))


class PyramidKV(SnapKV):
    """SnapKV with :func:`pyramid_budget` per layer."""

    config_type = PyramidKVConfig
    config: PyramidKVConfig

    def keep(self, inputs: EvictionInputs, budget: int) -> KeepPlan:
        c = self.config
        layer_budget = pyramid_budget(
            budget, inputs.key_len, c.window_size, c.beta, inputs.layer_idx, inputs.num_layers
        )
        return super().keep(inputs, layer_budget)
