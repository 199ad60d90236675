"""``sparse-attention-benchmark convert-hat``: the HashAttention authors' checkpoint -> ours.

See :mod:`sah_core.hat_convert` for both layouts. The checkpoint is read with
``torch.load(weights_only=True)`` only; one that needs pickle code execution exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def convert_hat_command(
    checkpoint: Annotated[Path, typer.Argument(help="The authors' state dict (.pt).")],
    output: Annotated[Path, typer.Argument(help="The .safetensors file to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
    heavy_size: Annotated[
        float,
        typer.Option(help="heavy_size of the printed masker config (int count or fraction)."),
    ] = 0.1,
    config_out: Annotated[
        Path | None,
        typer.Option("--config-out", help="Also write a sparse config JSON using OUTPUT."),
    ] = None,
) -> None:
    """Convert a HashAttention training checkpoint to the hash_attention masker's weights."""
    from sah_bench.cli import _fail
    from sah_core.hat_convert import convert_hat_checkpoint

    try:
        info = convert_hat_checkpoint(checkpoint, output, overwrite=force)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    size: int | float = int(heavy_size) if heavy_size >= 1 else heavy_size
    masker = info.masker_config(size, str(output))
    typer.echo(
        f"wrote {output}: {len(info.layers)} layers, {info.query_heads} query / "
        f"{info.key_heads} key heads, head dim {info.head_dim}, {info.hat_bits} bits, "
        f"{info.hat_mlp_layers} linear layers (hidden {info.hat_mlp_hidden_size}, silu)"
    )
    config = {"type": "ResearchAttentionConfig", "masker_configs": [masker]}
    text = json.dumps(config, indent=2)
    if config_out is not None:
        config_out.write_text(text + "\n")
        typer.echo(f"sparse config: {config_out}")
    else:
        typer.echo(text)
