"""Dense attention of the question and decode steps: transformers' SDPA, with grouped-query
attention run inside SDPA (``enable_gqa=True``) on the CPU even when a padding mask is given.

transformers' ``sdpa_attention_forward`` only passes ``enable_gqa`` when there is no
attention mask (CUDA's fused kernels fall back to the math kernel with one); otherwise it
first repeats every KV head ``Hq / Hkv`` times (``repeat_kv``: a copy of the whole cache per
layer and step). A padded question batch always has a mask, so on the CPU, whose SDPA
kernels take a mask and GQA together, that copy was about half of the dense question
prefill. Everything else (causal flag, pack_gqa for one query, position bias, other
devices) is transformers' own function.
"""

from __future__ import annotations

from typing import Any

import torch

#: Registry name (AttentionInterface + AttentionMaskInterface; no "sdpa" in it, and not the
#: research prefix, so it is never mistaken for an adapter's own registration).
DENSE_GQA_NAME = "sah_dense_gqa_attention"


def dense_gqa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``sdpa_attention_forward``, except a masked multi-token GQA call on the CPU."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    q_length = query.shape[2]
    if (
        groups > 1
        and attention_mask is not None
        and q_length > 1
        and query.device.type == "cpu"
        and key.shape[-1] == value.shape[-1] <= 256
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
    ):
        out = torch.nn.functional.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=dropout,
            scale=scaling,
            is_causal=False,
            enable_gqa=True,
        )
        return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        is_causal=is_causal,
        **kwargs,
    )


def ensure_registered() -> str:
    """Register :func:`dense_gqa_attention` with transformers' ``sdpa`` mask (once per
    process; stateless, so every adapter shares it) and return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if DENSE_GQA_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(DENSE_GQA_NAME, dense_gqa_attention)
    if DENSE_GQA_NAME not in AttentionMaskInterface._global_mapping:
        AttentionMaskInterface.register(DENSE_GQA_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return DENSE_GQA_NAME
