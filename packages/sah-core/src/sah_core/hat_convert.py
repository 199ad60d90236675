"""Convert a HashAttention training checkpoint to the masker's safetensors layout.

The HashAttention authors' training code (Desai et al., "HashAttention: Semantic Sparsity for
Faster Inference", arXiv:2412.14468; github.com/xAlg-ai/HashAttention-1.0) saves, per decoder
layer, one small MLP per query head for queries and one for keys, as a torch state dict
whose keys are ``{layer}.learning_to_hash_transformation_q.{head}.{j}.weight|bias`` (and
``..._k...``): ``nn.Sequential(Linear, SiLU, Linear, SiLU, Linear)`` (or 1 or 2 linear
layers), so the linear layers sit at ``j = 0, 2, 4, ...``; weights are ``[out, in]``. Both
MLPs have one head per *query* head and see post-RoPE queries and keys, the keys repeated per
query group (``repeat_kv``), which is what the masker does for a key MLP with ``Hq`` heads.

The converted file holds ``layer.{i}.query|key.{n}.weight`` ``[H, in, out]`` and
``layer.{i}.query|key.{n}.bias`` ``[H, out]`` in float32 (see
:mod:`sah_core.maskers.hash_attention`), ``n = 0, 1, ...`` numbering the linear layers.
Use it with ``hat_mlp_activation="silu"`` and the sizes :func:`convert_hat_checkpoint` returns.
Not representable (refused with a message): the LSH baseline (``lth_num_layers=0``, one shared
``learning_to_hash_transformation`` with an extra input coordinate). Training with
``CENTER=1`` standardised keys and queries before the MLPs; such checkpoints need that
step, which the masker does not do.

The checkpoint is read with ``torch.load(weights_only=True)`` only: a file that needs pickle
code execution is refused, never unpickled.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

_KEY = re.compile(
    r"^(?P<layer>\d+)\.learning_to_hash_transformation_(?P<side>[qk])\."
    r"(?P<head>\d+)\.(?P<j>\d+)\.(?P<kind>weight|bias)$"
)
_EXPECTED = "'{layer}.learning_to_hash_transformation_q|k.{head}.{j}.weight|bias'"


@dataclasses.dataclass(frozen=True)
class HatCheckpointInfo:
    """What a converted checkpoint holds; the masker config fields it needs."""

    layers: list[int]
    query_heads: int
    key_heads: int
    head_dim: int
    hat_bits: int
    hat_mlp_layers: int
    hat_mlp_hidden_size: int
    hat_mlp_activation: str = "silu"

    def masker_config(self, heavy_size: int | float, weight_file: str) -> dict[str, Any]:
        """A ``hash_attention`` masker config dict (JSON-ready) for the converted file."""
        return {
            "type": "hash_attention",
            "heavy_size": heavy_size,
            "hat_bits": self.hat_bits,
            "hat_mlp_layers": self.hat_mlp_layers,
            "hat_mlp_hidden_size": self.hat_mlp_hidden_size,
            "hat_mlp_activation": self.hat_mlp_activation,
            "hat_weight_file": weight_file,
        }


def load_checkpoint(path: str | os.PathLike[str]) -> Mapping[str, torch.Tensor]:
    """The state dict in ``path``, read with ``torch.load(weights_only=True)`` only."""
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"checkpoint={str(source)!r} is not allowed: no such file")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"checkpoint={str(source)!r} is not allowed: it needs pickle code execution, which "
            f"is never run (torch.load(weights_only=True) refused it: {first}); save a plain "
            "state dict of tensors (module.state_dict()) instead"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(
            f"checkpoint={str(source)!r} is not allowed: torch.load cannot read it ({error})"
        ) from None
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(
            f"checkpoint={str(source)!r} holds a {type(loaded).__name__}, which is not allowed: "
            f"expected a state dict of tensors with keys {_EXPECTED}"
        )
    return loaded


def hat_tensors_from_state_dict(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], HatCheckpointInfo]:
    """Our tensor layout (float32) and its sizes, from the authors' state dict."""
    # (layer, side) -> head -> j -> {"weight": W, "bias": b}
    found: dict[tuple[int, str], dict[int, dict[int, dict[str, torch.Tensor]]]] = {}
    unknown = []
    for name, tensor in state.items():
        match = _KEY.match(str(name))
        if match is None:
            unknown.append(str(name))
            continue
        slot = found.setdefault((int(match["layer"]), match["side"]), {})
        slot.setdefault(int(match["head"]), {}).setdefault(int(match["j"]), {})[match["kind"]] = (
            tensor
        )
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        lsh = any("learning_to_hash_transformation." in n for n in unknown)
        hint = (
            " (the LSH baseline, lth_num_layers=0, cannot be converted: its MLP takes an extra "
            "input coordinate)"
            if lsh
            else ""
        )
        raise ValueError(
            f"checkpoint keys {shown} are not allowed{hint}: expected only {_EXPECTED}"
        )
    if not found:
        raise ValueError(f"the checkpoint holds no tensor; expected keys {_EXPECTED}")
    layers = sorted({layer for layer, _ in found})
    tensors: dict[str, torch.Tensor] = {}
    sizes: dict[str, set[int]] = {"bits": set(), "hidden": set(), "depth": set(), "dim": set()}
    heads: dict[str, set[int]] = {"q": set(), "k": set()}
    for layer in layers:
        for side, ours in (("q", "query"), ("k", "key")):
            per_head = found.get((layer, side))
            where = f"layer {layer} learning_to_hash_transformation_{side}"
            if per_head is None:
                raise ValueError(f"{where} is missing: each layer needs the _q and the _k MLPs")
            if sorted(per_head) != list(range(len(per_head))):
                raise ValueError(
                    f"{where} heads {sorted(per_head)} are not allowed: use 0..H-1 without gaps"
                )
            heads[side].add(len(per_head))
            positions = sorted(per_head[0])
            if positions != list(range(0, 2 * len(positions), 2)):
                raise ValueError(
                    f"{where} linear layers at positions {positions} are not allowed: expected "
                    "0, 2, 4, ... (Linear, activation, Linear, ...)"
                )
            for head, layers_of_head in per_head.items():
                if sorted(layers_of_head) != positions:
                    raise ValueError(
                        f"{where} head {head} has linear layers {sorted(layers_of_head)}, which "
                        f"is not allowed: head 0 has {positions}"
                    )
            dims: list[int] = []
            for n, j in enumerate(positions):
                weights: list[torch.Tensor] = []
                biases: list[torch.Tensor] = []
                for head in range(len(per_head)):
                    parts = per_head[head][j]
                    if set(parts) != {"weight", "bias"}:
                        raise ValueError(
                            f"{where}.{head}.{j} has {sorted(parts)}, which is not allowed: each "
                            "linear layer needs a weight and a bias"
                        )
                    w, b = parts["weight"], parts["bias"]
                    expected_in = dims[-1] if dims else w.shape[-1]
                    if (
                        w.dim() != 2
                        or b.dim() != 1
                        or b.shape[0] != w.shape[0]
                        or w.shape[1] != expected_in
                        or (weights and w.shape[::-1] != weights[0].shape)
                    ):
                        raise ValueError(
                            f"{where}.{head}.{j}: weight {tuple(w.shape)} / bias "
                            f"{tuple(b.shape)} is not allowed: expected [out, {expected_in}] / "
                            "[out], the same for every head"
                        )
                    weights.append(w.detach().float().t())
                    biases.append(b.detach().float())
                if not dims:
                    dims.append(int(weights[0].shape[0]))
                dims.append(int(weights[0].shape[1]))
                tensors[f"layer.{layer}.{ours}.{n}.weight"] = torch.stack(weights).contiguous()
                tensors[f"layer.{layer}.{ours}.{n}.bias"] = torch.stack(biases).contiguous()
            sizes["dim"].add(dims[0])
            sizes["bits"].add(dims[-1])
            sizes["depth"].add(len(positions))
            sizes["hidden"].update(dims[1:-1])
    for key, what in (
        ("dim", "head dims"),
        ("bits", "output sizes (bits)"),
        ("depth", "MLP depths"),
        ("hidden", "hidden sizes"),
    ):
        if len(sizes[key]) > 1:
            raise ValueError(
                f"the checkpoint's MLPs have {what} {sorted(sizes[key])}, which is not allowed: "
                "the masker uses one value for every layer and side"
            )
    for side in ("q", "k"):
        if len(heads[side]) > 1:
            raise ValueError(
                f"the _{side} MLPs have {sorted(heads[side])} heads in different layers, which "
                "is not allowed: use the same head count in every layer"
            )
    depth = next(iter(sizes["depth"]))
    info = HatCheckpointInfo(
        layers=layers,
        query_heads=next(iter(heads["q"])),
        key_heads=next(iter(heads["k"])),
        head_dim=next(iter(sizes["dim"])),
        hat_bits=next(iter(sizes["bits"])),
        hat_mlp_layers=depth,
        # one linear layer has no hidden width; any positive value validates
        hat_mlp_hidden_size=next(iter(sizes["hidden"])) if sizes["hidden"] else 1,
    )
    return tensors, info


def convert_hat_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> HatCheckpointInfo:
    """Write ``output`` (``.safetensors``) from the authors' ``checkpoint``; return its sizes."""
    from safetensors.torch import save_file

    target = Path(output)
    if target.suffix != ".safetensors":
        raise ValueError(f"output={str(target)!r} is not allowed: use a .safetensors path")
    if target.exists() and not overwrite:
        raise ValueError(
            f"output={str(target)!r} is not allowed: it exists (pass overwrite=True / --force)"
        )
    tensors, info = hat_tensors_from_state_dict(load_checkpoint(checkpoint))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    save_file(
        tensors,
        str(partial),
        metadata={"format": "sah-hash-attention-v1", "activation": info.hat_mlp_activation},
    )
    os.replace(partial, target)
    return info
