"""`ResearchAttention`: a masker stack plus exact importance-weighted attention.

``custom_attention`` has the transformers attention-function signature, so an adapter
registers ``research_attention.custom_attention`` (through a small closure) with
``transformers.AttentionInterface`` and every decoder layer calls it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from sah_core.attention.common import normalize_attention_mask
from sah_core.attention.masked import masked_attention
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker
from sah_core.maskers.sampling_base import SamplingMaskerConfig
from sah_core.metrics.micro_metric_logger import MicroMetricLogger


@dataclasses.dataclass
class ResearchAttentionConfig:
    """An ordered masker stack. Each masker adds keys to the mask built by the ones before.

    At most one sampling masker (its weights are keep-probabilities). ``to_dict`` /
    ``from_dict`` round-trip through JSON with ``"type"`` tags.
    """

    masker_configs: list[MaskerConfig] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.masker_configs, (list, tuple)):
            raise ValueError(
                f"ResearchAttentionConfig.masker_configs={self.masker_configs!r} is not "
                "allowed: use a list of masker configs"
            )
        self.masker_configs = list(self.masker_configs)
        for position, config in enumerate(self.masker_configs):
            if not isinstance(config, MaskerConfig):
                raise ValueError(
                    f"ResearchAttentionConfig.masker_configs[{position}]={config!r} is not "
                    "allowed: each entry must be a MaskerConfig instance"
                )
        sampling = [
            type(c).__name__ for c in self.masker_configs if isinstance(c, SamplingMaskerConfig)
        ]
        if len(sampling) > 1:
            raise ValueError(
                f"ResearchAttentionConfig.masker_configs holds {len(sampling)} sampling maskers "
                f"({', '.join(sampling)}), which is not allowed: at most one sampling masker "
                "per stack"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "masker_configs": [config.to_dict() for config in self.masker_configs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResearchAttentionConfig:
        if not isinstance(data, dict):
            raise ValueError(f"data={data!r} is not allowed: expected a dict from to_dict()")
        tag = data.get("type", cls.__name__)
        if tag != cls.__name__:
            raise ValueError(f"data['type']={tag!r} is not allowed: expected {cls.__name__!r}")
        unknown = sorted(set(data) - {"type", "masker_configs"})
        if unknown:
            raise ValueError(
                f"ResearchAttentionConfig fields {unknown} are not allowed: known fields are "
                "['masker_configs']"
            )
        entries = data.get("masker_configs", [])
        if not isinstance(entries, list):
            raise ValueError(
                f"data['masker_configs']={entries!r} is not allowed: expected a list of dicts"
            )
        return cls(masker_configs=[MaskerConfig.from_dict(entry) for entry in entries])


class ResearchAttention:
    """Runs the masker stack, then attention under the resulting mask.

    ``query_chunk_size`` (None = automatic) caps the query rows processed at once by the
    maskers and the attention, so prefill never holds a ``[B, H, Q, K]`` tensor for all Q.
    """

    def __init__(
        self,
        config: ResearchAttentionConfig,
        maskers: list[ResearchMasker] | None = None,
        *,
        query_chunk_size: int | None = None,
    ) -> None:
        if not isinstance(config, ResearchAttentionConfig):
            raise ValueError(
                f"config={type(config).__name__} is not allowed: expected a ResearchAttentionConfig"
            )
        if query_chunk_size is not None and (
            isinstance(query_chunk_size, bool)
            or not isinstance(query_chunk_size, int)
            or query_chunk_size < 1
        ):
            raise ValueError(
                f"query_chunk_size={query_chunk_size!r} is not allowed: use a positive int or None"
            )
        self.config = config
        self.maskers: list[ResearchMasker] = (
            list(maskers)
            if maskers is not None
            else [ResearchMasker.create_from_config(c) for c in config.masker_configs]
        )
        self.query_chunk_size = query_chunk_size

    @classmethod
    def create_from_config(
        cls, config: ResearchAttentionConfig, *, query_chunk_size: int | None = None
    ) -> ResearchAttention:
        return cls(config, query_chunk_size=query_chunk_size)

    # ------------------------------------------------------------------ mask
    def compute_mask(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        sparse_meta_data: dict[Any, Any] | None,
        layer_idx: int | None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> Mask:
        """The stack's mask ``[B, Hq, Q, K]``: empty, then each masker's ``add_mask``."""
        shape = ResearchMasker.mask_shape(queries, keys)
        mask = Mask.empty(shape, queries.device, torch.float32)
        meta: dict[Any, Any] = {} if sparse_meta_data is None else sparse_meta_data
        kwargs = dict(kwargs)
        kwargs["layer_idx"] = layer_idx
        if self.query_chunk_size is not None:
            kwargs.setdefault("query_chunk_size", self.query_chunk_size)
        for masker in self.maskers:
            mask = masker.add_mask(
                keys, queries, values, attention_mask, scaling, dropout, meta, mask, **kwargs
            )
        return mask

    # ------------------------------------------------------------------ attention
    def custom_attention(
        self,
        module: Any,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        sparse_meta_data: dict[Any, Any] | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """transformers attention function: returns ``(out [B, Q, Hq, D], None)``.

        ``queries [B, Hq, Q, D]``, ``keys``/``values`` ``[B, Hkv, K, D]``; ``attention_mask``
        additive float ``[B, 1, Q, K]``, bool (True = attend) or None. ``layer_idx`` is
        ``module.layer_idx`` when a module is given, else ``kwargs["layer_idx"]``.
        ``kwargs["s_aux"]`` (``[Hq]``) adds gpt-oss style sink logits. Other kwargs reach
        the maskers.
        """
        if module is not None and getattr(module, "layer_idx", None) is not None:
            layer_idx = module.layer_idx
        else:
            layer_idx = kwargs.get("layer_idx")
        kwargs = {key: v for key, v in kwargs.items() if key != "layer_idx"}
        s_aux = kwargs.pop("s_aux", None)
        if scaling is None:
            scaling = 1.0 / math.sqrt(queries.shape[-1])
        if sparse_meta_data is None:
            sparse_meta_data = {}
        additive = normalize_attention_mask(attention_mask, keys.shape[2])
        mask = self.compute_mask(
            queries,
            keys,
            values,
            additive,
            scaling,
            sparse_meta_data,
            layer_idx,
            dropout=dropout,
            **kwargs,
        )
        chunk = kwargs.get("query_chunk_size", self.query_chunk_size)
        out = masked_attention(
            queries,
            keys,
            values,
            mask,
            scaling=scaling,
            attention_mask=additive,
            s_aux=s_aux,
            dropout=dropout,
            query_chunk_size=chunk,
        )
        logger = MicroMetricLogger.active()
        if logger is not None and logger.should_record():
            logger.record_attention(
                layer_idx,
                queries,
                keys,
                values,
                mask,
                out,
                scaling=scaling,
                attention_mask=additive,
                s_aux=s_aux,
                query_chunk_size=chunk,
            )
        return out.transpose(1, 2).contiguous(), None
