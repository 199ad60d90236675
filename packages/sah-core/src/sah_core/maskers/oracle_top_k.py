"""Oracle top-k masker: each query keeps the ``heavy_size`` keys with the largest true
attention scores ``q . k * scaling`` (the upper bound that approximate top-k methods chase).

Oracle heavy-hitter selection as studied in Zhang et al., "H2O: Heavy-Hitter Oracle for
Efficient Generative Inference of Large Language Models", NeurIPS 2023, arXiv:2306.14048,
and the "oracle top-k" baseline of Singhania et al., "Loki: Low-Rank Keys for Efficient
Sparse Attention", arXiv:2406.02542.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig


@dataclasses.dataclass
class OracleTopKConfig(TopKMaskerConfig):
    """``heavy_size``: keys per row (int count or float fraction of the key length)."""

    type_tag = "oracle_top_k"


class OracleTopK(TopKMasker):
    """Scores every key by its exact attention logit (one grouped matmul per chunk, shared
    with the attention through ``call.chunk_scores``)."""

    config_type = OracleTopKConfig
    config: OracleTopKConfig
    #: the scores are the exact logits: a prefill keeps the selected ones for the attention
    logit_scores = True

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        # the call's shared scores: the attention reuses them for the selected keys
        return call.chunk_scores(chunk)
