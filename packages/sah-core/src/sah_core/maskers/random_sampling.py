"""Random sampling masker: every eligible key is kept independently with probability
``sampling_rate`` and, when kept, weighted by ``1/sampling_rate`` (an unbiased
Horvitz-Thompson estimate of the softmax numerator and denominator).

The uniform-sampling baseline of Desai et al., "vAttention: Verified Sparse Attention"
(2025), and the sampling view of attention in Chen et al., "MagicPIG: LSH Sampling for
Efficient LLM Generation", ICLR 2025, arXiv:2410.16179. Estimator: Horvitz & Thompson,
"A Generalization of Sampling Without Replacement From a Finite Universe", JASA 1952.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from sah_core import search_space as sp
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import check_float
from sah_core.maskers.sampling_base import SamplingMasker, SamplingMaskerConfig


@dataclasses.dataclass
class RandomSamplingMaskerConfig(SamplingMaskerConfig):
    """``sampling_rate`` in (0, 1]: keep-probability of every key not already selected."""

    type_tag = "random_sampling"

    sampling_rate: float = 1.0
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {"sampling_rate": sp.WHOLE_BUDGET}, (sp.budget_left,)
    )

    def validate(self) -> None:
        super().validate()
        check_float(self, "sampling_rate", self.sampling_rate, 0.0, 1.0, low_inclusive=False)


class RandomSamplingMasker(SamplingMasker):
    """Bernoulli(``sampling_rate``) over the keys not yet selected and not masked."""

    config_type = RandomSamplingMaskerConfig
    config: RandomSamplingMaskerConfig

    def keep_probabilities(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> torch.Tensor:
        return torch.full((1, 1, 1, 1), float(self.config.sampling_rate), device=call.device)
