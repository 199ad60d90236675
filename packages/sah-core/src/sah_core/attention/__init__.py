"""Attention paths: dense, dense-mask, and index-form (the kernel hook lives in
:mod:`sah_core.attention.index_form`)."""

from sah_core.attention.dense import dense_attention, dense_mask_attention
from sah_core.attention.index_form import (
    index_attention,
    index_attention_reference,
    register_index_attention_backend,
    unregister_index_attention_backend,
)
from sah_core.attention.masked import masked_attention

__all__ = [
    "dense_attention",
    "dense_mask_attention",
    "index_attention",
    "index_attention_reference",
    "masked_attention",
    "register_index_attention_backend",
    "unregister_index_attention_backend",
]
