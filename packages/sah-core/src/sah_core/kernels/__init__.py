"""Attention kernels for sparse selections: Triton on CUDA, torch references elsewhere.

* :func:`sparse_decode_attention` - attention over an index-form mask (selected key indices
  padded with -1 plus keep-probabilities), GQA-aware, split-K, optional attention sinks.
* :func:`block_sparse_prefill_attention` - attention over the active tiles of a block mask,
  causal inside diagonal tiles; layouts in :mod:`sah_core.kernels.block_layout`.
* ``*_reference`` - the plain torch semantics the kernels match.
* :class:`EfficientQuestAttention` - Quest page selection bound straight to the decode kernel.

Triton is imported only when a kernel actually runs, so this package imports without it.
``SAH_FORCE_REFERENCE_KERNELS=1`` makes the dispatcher use the references.
"""

from sah_core.kernels.block_layout import (
    active_block_lists,
    block_mask_from_active_blocks,
    causal_block_mask,
    streaming_block_mask,
)
from sah_core.kernels.dispatch import (
    FORCE_REFERENCE_ENV,
    KernelBackend,
    block_sparse_prefill_attention,
    select_backend,
    sparse_decode_attention,
)
from sah_core.kernels.efficient_attention import EfficientAttention
from sah_core.kernels.efficient_quest import (
    EfficientQuestAttention,
    QuestEfficientConfig,
    QuestPageSummaries,
    quest_page_upper_bounds,
    quest_select_indices,
)
from sah_core.kernels.reference import (
    block_sparse_prefill_attention_reference,
    sparse_decode_attention_reference,
)

__all__ = [
    "FORCE_REFERENCE_ENV",
    "EfficientAttention",
    "EfficientQuestAttention",
    "KernelBackend",
    "QuestEfficientConfig",
    "QuestPageSummaries",
    "active_block_lists",
    "block_mask_from_active_blocks",
    "block_sparse_prefill_attention",
    "block_sparse_prefill_attention_reference",
    "causal_block_mask",
    "quest_page_upper_bounds",
    "quest_select_indices",
    "select_backend",
    "sparse_decode_attention",
    "sparse_decode_attention_reference",
    "streaming_block_mask",
]
