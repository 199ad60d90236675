"""Double Sparsity top-k masker: approximate scores from a few calibrated outlier channels.

Yang, Sheng, Gonzalez, Stoica and Zheng, "Post-Training Sparse Attention with Double
Sparsity", 2024, arXiv:2408.07092.

Offline calibration ranks, per layer and head, the channels of the query/key projections by
importance (outlier channels). At run time only the top ``r = max(1, D // group_factor)``
channels are used: the *label cache* holds each key's ``r`` selected channels (quantised to
``label_bits``: symmetric, one scale per key, round to nearest; 32 = exact), the query keeps
the same channels, and ``q_label . k_label`` ranks the keys; the top ``heavy_size`` are kept.
The label cache is kept per layer in ``sparse_meta_data`` and extended in decode.

Channels: ``sorted_channel_file`` is a JSON file mapping
``"model.layers.{i}.self_attn.{q_proj|k_proj|qk_proj}"`` to a list over heads of channel ids
sorted by importance; ``channel_selection`` picks which calibration is used. The lists may be
per KV head (``Hkv`` lists, shared by the query group) or per query head (``Hq`` lists). Each
layer uses **its own** lists. Without a file, the channels are ranked per batch row and query
head by ``mean_q |q_d| * mean_k |k_d|`` over the current call (a calibration-free fallback;
the label cache is then rebuilt every call, as the channels may change); the means skip a
batch row's padded queries and keys (``CallPlan.key_valid``), so padding changes no row.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import grouped_scores
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.maskers.base import check_choice, check_int
from sah_core.maskers.key_state_cache import (
    incremental_key_features,
    quantize_symmetric,
    valid_mean,
)
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig

_SELECTIONS = ("q_proj", "k_proj", "qk_proj")


@dataclasses.dataclass
class DoubleSparsityTopKMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``sorted_channel_file`` JSON path or None (fallback, see
    the module doc); ``group_factor`` >= 1 (``D // group_factor`` channels are used);
    ``label_bits`` in [2, 32] (32 = exact); ``channel_selection`` one of q_proj/k_proj/qk_proj."""

    type_tag = "double_sparsity"

    sorted_channel_file: str | None = None
    group_factor: int = 8
    label_bits: int = 16
    channel_selection: str = "qk_proj"
    search_space: ClassVar[sp.SearchSpace] = TopKMaskerConfig.search_space.extend(
        (sp.at_most_head_dim("group_factor"),),
        group_factor=sp.Choice((2, 4, 8, 16)),
        label_bits=sp.Choice((4, 8, 16)),
    )

    def validate(self) -> None:
        super().validate()
        if self.sorted_channel_file is not None and not isinstance(
            self.sorted_channel_file, (str, os.PathLike)
        ):
            raise ValueError(
                f"DoubleSparsityTopKMaskerConfig.sorted_channel_file="
                f"{self.sorted_channel_file!r} is not allowed: use a JSON file path or None"
            )
        check_int(self, "group_factor", self.group_factor, 1)
        check_int(self, "label_bits", self.label_bits, 2, 32)
        check_choice(self, "channel_selection", self.channel_selection, _SELECTIONS)


def gather_channels(x: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """``x [B, Hx, N, D]`` restricted to ``channels [B|1, H, r]`` -> ``[B, H, N, r]``.

    ``H`` may be a multiple of ``Hx`` (query-head channels over KV-head keys): head ``h``
    reads ``x`` head ``h // (H // Hx)``, without materialising repeated keys.
    """
    b, hx, n, d = x.shape
    heads, r = channels.shape[1], channels.shape[2]
    group = heads // hx
    source = x.unsqueeze(2).expand(b, hx, group, n, d)
    index = channels.view(channels.shape[0], hx, group, 1, r).expand(b, hx, group, n, r)
    return source.gather(4, index).view(b, heads, n, r)


class DoubleSparsityTopKMasker(TopKMasker):
    """Ranks keys by the product of the query's and key's top outlier channels."""

    config_type = DoubleSparsityTopKMaskerConfig
    config: DoubleSparsityTopKMaskerConfig

    def __init__(self, config: DoubleSparsityTopKMaskerConfig) -> None:
        super().__init__(config)
        self._channels: dict[str, list[list[int]]] | None = None
        self._channel_tensors: dict[tuple[int | None, int, int, int, str], torch.Tensor] = {}
        if config.sorted_channel_file is not None:
            self._channels = self._load(str(config.sorted_channel_file))

    @staticmethod
    def _load(path: str) -> dict[str, list[list[int]]]:
        if not os.path.isfile(path):
            raise ValueError(
                f"DoubleSparsityTopKMaskerConfig.sorted_channel_file={path!r} is not allowed: "
                "no such file"
            )
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"DoubleSparsityTopKMaskerConfig.sorted_channel_file={path!r} is not "
                    f"allowed: not valid JSON ({error})"
                ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"DoubleSparsityTopKMaskerConfig.sorted_channel_file={path!r} is not allowed: "
                "expected a JSON object {'model.layers.{i}.self_attn.qk_proj': [[...], ...]}"
            )
        return data

    def _file_channels(
        self, layer_idx: int | None, hq: int, hkv: int, d: int, device: torch.device
    ) -> torch.Tensor:
        """This layer's channels ``[1, Hq|Hkv, r]`` from the calibration file (built once per
        layer, shape and device, and kept on the masker: they are config, not request state)."""
        cache_key = (layer_idx, hq, hkv, d, str(device))
        cached = self._channel_tensors.get(cache_key)
        if cached is None:
            cached = self._build_file_channels(layer_idx, hq, hkv, d, device)
            self._channel_tensors[cache_key] = cached
        return cached

    def _build_file_channels(
        self, layer_idx: int | None, hq: int, hkv: int, d: int, device: torch.device
    ) -> torch.Tensor:
        assert self._channels is not None
        name = f"model.layers.{layer_idx}.self_attn.{self.config.channel_selection}"
        lists = self._channels.get(name)
        if lists is None:
            raise ValueError(
                f"layer_idx={layer_idx!r} is not allowed: {self.config.sorted_channel_file!r} "
                f"has no entry {name!r}"
            )
        r = max(1, d // self.config.group_factor)
        if not isinstance(lists, list) or len(lists) not in (hq, hkv):
            raise ValueError(
                f"{name!r} holds {len(lists) if isinstance(lists, list) else lists!r} head lists, "
                f"which is not allowed: expected {hkv} (KV heads) or {hq} (query heads)"
            )
        rows = []
        for head, ids in enumerate(lists):
            chosen = [int(c) for c in ids[:r]]
            if len(chosen) < r or min(chosen) < 0 or max(chosen) >= d:
                raise ValueError(
                    f"{name!r}[{head}]={list(ids)[:8]}... is not allowed: need >= {r} channel ids "
                    f"in [0, {d - 1}]"
                )
            rows.append(chosen)
        return torch.tensor(rows, dtype=torch.int64, device=device).unsqueeze(0)

    @staticmethod
    def _magnitude_channels(call: CallPlan, r: int) -> torch.Tensor:
        """Fallback channels ``[B, Hq, r]``: largest ``mean|q_d| * mean|k_d|`` per query head,
        the means over a batch row's real queries and keys only (padding left out)."""
        queries, keys, valid = call.queries, call.keys, call.key_valid
        group = queries.shape[1] // keys.shape[1]
        key_valid = query_valid = None
        if valid is not None and call.query_valid is not None:
            key_valid = valid[:, None, :, None]
            query_valid = call.query_valid[:, None, :, None]  # pad query rows left out
        q_mag = valid_mean(queries.float().abs(), query_valid, dim=2)  # [B, Hq, D]
        k_mag = valid_mean(keys.float().abs(), key_valid, dim=2).repeat_interleave(group, dim=1)
        return (q_mag * k_mag).topk(r, dim=-1).indices

    def prepare(self, call: CallPlan) -> Any:
        hq, hkv, d = call.num_q_heads, call.num_kv_heads, call.head_dim
        r = max(1, d // self.config.group_factor)
        bits = self.config.label_bits
        if self._channels is None:
            channels = self._magnitude_channels(call, r)
            labels = quantize_symmetric(gather_channels(call.keys.float(), channels), bits)
            return channels, labels
        channels = self._file_channels(call.layer_idx, hq, hkv, d, call.device)

        def key_labels(segment: torch.Tensor) -> torch.Tensor:
            # [B, Hkv, n, r] for KV-head lists, [B, Hq, n, r] for query-head lists
            return quantize_symmetric(gather_channels(segment.float(), channels), bits)

        labels = incremental_key_features(call.state, "label_cache", call.keys, key_labels)
        return channels, labels

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        channels, labels = state
        queries, key_limit = chunk.queries, chunk.key_limit
        hq = queries.shape[1]
        query_channels = channels
        if channels.shape[1] != hq:
            query_channels = channels.repeat_interleave(hq // channels.shape[1], dim=1)
        query_labels = gather_channels(queries.float(), query_channels)
        # labels have Hkv heads (shared by a query group) or Hq heads (a group of one)
        return grouped_scores(query_labels, labels[:, :, :key_limit], 1.0)
