"""HashAttention top-k masker: learned binary codes, keys ranked by matching bits.

Desai, Yang, Ding, Mirhoseini, Stoica and Gonzalez, "HashAttention: Semantic Sparsity for
Faster Inference", 2024, arXiv:2412.14468.

Per layer and head, two small learned MLPs map a query and a key to ``hat_bits`` real
outputs; their signs are the binary codes (``x >= 0`` -> +1, else -1). A key's score for a
query is the number of bits on which their codes agree (computed as ``(bits + c_q . c_k) / 2``
from the +-1 codes, the same ranking as the Hamming similarity), and the top ``heavy_size``
keys are kept; equal counts go to the earlier key. Key codes are cached in the masker's
state slot; decode computes codes only for the new keys. Codes are per key, so padded keys
of a batch change no other key's score.

Weights
-------
An MLP has ``hat_mlp_layers`` linear layers: ``D -> hidden -> ... -> hidden -> hat_bits``
(one layer: ``D -> hat_bits``), ``hat_mlp_activation`` between layers (not after the last).
Per decoder layer ``i`` the weights are either

* ``hat_weights[i] = {"query_matrix": [W_0, ...], "query_bias": [b_0, ...],
  "key_matrix": [...], "key_bias": [...]}`` -- lists over MLP layers of tensors (or nested
  lists) ``W_j: [H, in_j, out_j]`` and ``b_j: [H, out_j]``; the MLP computes ``x @ W_j + b_j``
  per head. ``i`` may be an int or its string (JSON); or
* ``hat_weight_file``: a ``.safetensors`` file with tensors ``layer.{i}.query.{j}.weight``
  ``[H, in, out]``, ``layer.{i}.query.{j}.bias`` ``[H, out]`` and the same with ``key``.

The query MLP has ``Hq`` heads. The key MLP has ``Hkv`` heads (one code per KV head, shared by
its query group) or ``Hq`` heads (one code per query head, computed from its KV head's keys).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import grouped_scores
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.maskers.base import check_choice, check_int
from sah_core.maskers.key_state_cache import incremental_key_features
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
_PARTS = ("query_matrix", "query_bias", "key_matrix", "key_bias")

#: One MLP: list over its layers of (weight [H, in, out], bias [H, out]).
MLP = list[tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass
class HashAttentionTopKMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``hat_bits`` code bits (>= 1); ``hat_mlp_layers`` linear
    layers per MLP (>= 1); ``hat_mlp_hidden_size`` hidden width (>= 1); ``hat_mlp_activation``
    one of relu/silu/gelu/tanh/sigmoid; exactly one of ``hat_weights`` (dict, see the module
    doc) and ``hat_weight_file`` (path of a ``.safetensors`` file)."""

    type_tag = "hash_attention"

    hat_bits: int = 32
    hat_mlp_layers: int = 3
    hat_mlp_hidden_size: int = 128
    hat_mlp_activation: str = "silu"
    hat_weights: dict[Any, Any] | None = None
    hat_weight_file: str | None = None
    #: ``hat_bits`` must match the weights: searched only over weight files per bit count.
    search_space: ClassVar[sp.SearchSpace] = TopKMaskerConfig.search_space.extend(
        hat_bits=sp.Choice((8, 16, 32, 64))
    )

    def validate(self) -> None:
        super().validate()
        check_int(self, "hat_bits", self.hat_bits, 1)
        check_int(self, "hat_mlp_layers", self.hat_mlp_layers, 1)
        check_int(self, "hat_mlp_hidden_size", self.hat_mlp_hidden_size, 1)
        check_choice(self, "hat_mlp_activation", self.hat_mlp_activation, sorted(_ACTIVATIONS))
        has_dict = self.hat_weights is not None
        has_file = self.hat_weight_file is not None
        if has_dict == has_file:
            raise ValueError(
                f"HashAttentionTopKMaskerConfig.hat_weights={'<dict>' if has_dict else None} / "
                f"hat_weight_file={self.hat_weight_file!r} is not allowed: give exactly one of "
                "them"
            )
        if has_dict and not isinstance(self.hat_weights, dict):
            raise ValueError(
                f"HashAttentionTopKMaskerConfig.hat_weights={type(self.hat_weights).__name__} "
                "is not allowed: use a dict {layer_idx: {'query_matrix': [...], ...}}"
            )
        if has_file and (
            not isinstance(self.hat_weight_file, (str, os.PathLike))
            or not str(self.hat_weight_file).endswith(".safetensors")
        ):
            raise ValueError(
                f"HashAttentionTopKMaskerConfig.hat_weight_file={self.hat_weight_file!r} is not "
                "allowed: use the path of a .safetensors file (pickled weights are never loaded; "
                "convert them once, in a trusted session, to the tensor names "
                "'layer.{i}.query|key.{j}.weight|bias')"
            )


def signed_codes(
    x: torch.Tensor,
    mlp: MLP,
    activation: Callable[..., torch.Tensor],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``x [B, H, N, D]`` -> +-1 codes ``[B, H, N, bits]`` (``dtype``, float32 by default)
    through per-head MLPs."""
    out = x.float()
    for position, (weight, bias) in enumerate(mlp):
        out = torch.matmul(out, weight.unsqueeze(0)) + bias[None, :, None, :]
        if position < len(mlp) - 1:
            out = activation(out)
    one = torch.ones((), dtype=dtype, device=out.device)
    return torch.where(out >= 0, one, -one)


def code_dtype(device: torch.device, bits: int) -> torch.dtype:
    """The dtype the +-1 codes are matched in: bfloat16 where its matmul is native (the
    products are +-1 and the sums integers in ``[-bits, bits]``, exact in bfloat16 up to 256
    bits, with half the memory and ~3x the CPU speed of float32), else float32."""
    if bits > 256:
        return torch.float32
    if device.type == "cpu":
        supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        try:
            return torch.bfloat16 if supported is not None and supported() else torch.float32
        except RuntimeError:
            return torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class HashAttentionTopKMasker(TopKMasker):
    """Ranks keys by the agreement of their learned binary codes with the query's."""

    config_type = HashAttentionTopKMaskerConfig
    config: HashAttentionTopKMaskerConfig
    #: bit counts are integers and tie often: ties go to the earlier key (stable sort), the
    #: same batched as one by one
    tied_scores = True

    def __init__(self, config: HashAttentionTopKMaskerConfig) -> None:
        super().__init__(config)
        self._activation = _ACTIVATIONS[config.hat_mlp_activation]
        self._layers = self._load_weights()
        self._on_device: dict[tuple[int, str], dict[str, MLP]] = {}

    # ------------------------------------------------------------------ weights
    def _load_weights(self) -> dict[int, dict[str, MLP]]:
        """Per decoder layer: ``{"query": MLP, "key": MLP}`` (validated shapes)."""
        config = self.config
        raw: dict[int, dict[str, list[Any]]] = {}
        if config.hat_weight_file is not None:
            path = str(config.hat_weight_file)
            if not os.path.isfile(path):
                raise ValueError(
                    f"HashAttentionTopKMaskerConfig.hat_weight_file={path!r} is not allowed: "
                    "no such file"
                )
            from safetensors.torch import load_file

            tensors = load_file(path)
            for name, tensor in tensors.items():
                parts = name.split(".")
                if (
                    len(parts) != 5
                    or parts[0] != "layer"
                    or parts[2] not in ("query", "key")
                    or parts[4] not in ("weight", "bias")
                    or not parts[1].isdigit()
                    or not parts[3].isdigit()
                ):
                    raise ValueError(
                        f"tensor name {name!r} in {path!r} is not allowed: use "
                        "'layer.{i}.query|key.{j}.weight|bias'"
                    )
                kind = f"{parts[2]}_{'matrix' if parts[4] == 'weight' else 'bias'}"
                slot = raw.setdefault(int(parts[1]), {}).setdefault(kind, [])
                slot.append((int(parts[3]), tensor))
            for layer in raw.values():
                for kind, entries in layer.items():
                    entries.sort(key=lambda item: item[0])
                    if [j for j, _ in entries] != list(range(len(entries))):
                        raise ValueError(
                            f"{kind} MLP layer numbers {[j for j, _ in entries]} in {path!r} are "
                            "not allowed: use 0..n-1"
                        )
                    layer[kind] = [t for _, t in entries]
        else:
            assert config.hat_weights is not None
            for layer_key, parts_dict in config.hat_weights.items():
                try:
                    layer_idx = int(layer_key)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"hat_weights key {layer_key!r} is not allowed: use a layer index"
                    ) from None
                if not isinstance(parts_dict, dict):
                    raise ValueError(
                        f"hat_weights[{layer_key!r}] is not allowed: use a dict with keys "
                        f"{list(_PARTS)}"
                    )
                raw[layer_idx] = {
                    kind: [
                        torch.as_tensor(t, dtype=torch.float32) for t in parts_dict.get(kind, [])
                    ]
                    for kind in _PARTS
                    if kind in parts_dict
                }
        return {idx: self._build_layer(idx, parts) for idx, parts in raw.items()}

    def _build_layer(self, layer_idx: int, parts: dict[str, list[Any]]) -> dict[str, MLP]:
        config = self.config
        built: dict[str, MLP] = {}
        for side in ("query", "key"):
            weights = parts.get(f"{side}_matrix")
            biases = parts.get(f"{side}_bias")
            if weights is None or biases is None:
                raise ValueError(
                    f"HashAttention weights of layer {layer_idx} lack {side}_matrix/{side}_bias: "
                    f"each layer needs {list(_PARTS)}"
                )
            if len(weights) != config.hat_mlp_layers or len(biases) != config.hat_mlp_layers:
                raise ValueError(
                    f"HashAttention {side} MLP of layer {layer_idx} has {len(weights)} weights / "
                    f"{len(biases)} biases, which is not allowed: hat_mlp_layers="
                    f"{config.hat_mlp_layers}"
                )
            mlp: MLP = []
            heads = int(weights[0].shape[0])
            for j, (w, b) in enumerate(zip(weights, biases, strict=True)):
                w = torch.as_tensor(w, dtype=torch.float32)
                b = torch.as_tensor(b, dtype=torch.float32)
                out_dim = (
                    config.hat_bits
                    if j == config.hat_mlp_layers - 1
                    else (config.hat_mlp_hidden_size)
                )
                in_ok = j == 0 or w.shape[1] == config.hat_mlp_hidden_size
                if (
                    w.dim() != 3
                    or w.shape[0] != heads
                    or w.shape[2] != out_dim
                    or not in_ok
                    or tuple(b.shape) != (heads, out_dim)
                ):
                    raise ValueError(
                        f"HashAttention {side} MLP layer {j} of decoder layer {layer_idx}: weight "
                        f"{tuple(w.shape)} / bias {tuple(b.shape)} is not allowed: expected "
                        f"[H, in, {out_dim}] / [H, {out_dim}] (hat_bits={config.hat_bits}, "
                        f"hat_mlp_hidden_size={config.hat_mlp_hidden_size})"
                    )
                mlp.append((w, b))
            built[side] = mlp
        return built

    def _layer_mlps(
        self, layer_idx: int | None, queries: torch.Tensor, keys: torch.Tensor
    ) -> dict[str, MLP]:
        if layer_idx is None or layer_idx not in self._layers:
            raise ValueError(
                f"layer_idx={layer_idx!r} is not allowed: HashAttention weights cover layers "
                f"{sorted(self._layers)}"
            )
        mlps = self._layers[layer_idx]
        hq, hkv, d = queries.shape[1], keys.shape[1], queries.shape[3]
        q_heads = mlps["query"][0][0].shape[0]
        k_heads = mlps["key"][0][0].shape[0]
        if q_heads != hq or k_heads not in (hq, hkv):
            raise ValueError(
                f"HashAttention weights of layer {layer_idx} have {q_heads} query / {k_heads} key "
                f"heads, which is not allowed: expected {hq} query heads and {hkv} or {hq} key "
                "heads"
            )
        if mlps["query"][0][0].shape[1] != d or mlps["key"][0][0].shape[1] != d:
            raise ValueError(
                f"HashAttention weights of layer {layer_idx} take inputs of size "
                f"{mlps['query'][0][0].shape[1]}, which is not allowed: the head dim is {d}"
            )
        # weights are config, not request state: keep one copy per device on the masker
        cache_key = (layer_idx, str(queries.device))
        moved = self._on_device.get(cache_key)
        if moved is None:
            device = queries.device
            moved = {
                side: [(w.to(device), b.to(device)) for w, b in mlp] for side, mlp in mlps.items()
            }
            self._on_device[cache_key] = moved
        return moved

    # ------------------------------------------------------------------ scoring
    def prepare(self, call: CallPlan) -> Any:
        layer_idx, queries, keys = call.layer_idx, call.queries, call.keys
        mlps = self._layer_mlps(layer_idx, queries, keys)
        key_mlp = mlps["key"]
        per_query_head = key_mlp[0][0].shape[0] != keys.shape[1]
        group = queries.shape[1] // keys.shape[1]

        dtype = code_dtype(keys.device, self.config.hat_bits)

        def key_codes(segment: torch.Tensor) -> torch.Tensor:
            if per_query_head:
                segment = segment.repeat_interleave(group, dim=1)
            return signed_codes(segment, key_mlp, self._activation, dtype)

        state = call.state
        codes = incremental_key_features(state, "key_codes", keys, key_codes)
        return codes, mlps["query"]

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        key_codes, query_mlp = state
        query_codes = signed_codes(chunk.queries, query_mlp, self._activation, key_codes.dtype)
        agreement = grouped_scores(query_codes, key_codes[:, :, : chunk.key_limit], 1.0)
        # +-1 inner product (an exact integer) -> number of matching bits
        return agreement.float().add_(self.config.hat_bits).mul_(0.5)
