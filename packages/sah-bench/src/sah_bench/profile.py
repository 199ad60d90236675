"""``sparse-attention-benchmark profile``: where the time of a sparse-attention layer call goes.

Runs either a request through a model (``profile_request``: a context of a given length in
model tokens and one question, answered with the sparse config) or a synthetic decode on random
tensors (``profile_decode``: ``layers`` layer calls per step, one new key per step, starting at
``keys`` keys) under ``torch.profiler``, then writes

* ``trace.json``: a Chrome trace (open it in ``chrome://tracing`` or https://ui.perfetto.dev);
* ``profile.csv`` / ``profile.md``: one row per (layer, part) -- the whole layer call, the call
  plan, each masker (``masker[j]:<tag>``), the attention backend that ran
  (``attention:<backend>``), the micro metrics and the rest (``other``) -- with its calls,
  milliseconds, microseconds per call, share of the layer call, and the top-level torch
  (``aten::``) ops per call;
* ``summary.csv`` / ``summary.md``: the same summed over layers;
* ``ops.txt``: torch's own table of the most expensive ops.

The parts are the ``record_function`` ranges ``ResearchAttention`` opens while a profiler runs
(``sah.call[layer=i]``, ``sah.plan``, ``sah.masker[j]:<tag>``, ``sah.attention`` holding a
``sah.backend:<name>`` marker, ``sah.metrics``). Host (CPU) times are wall time of the range on
the host; on CUDA (profiled through kineto; the CPU uses torch's autograd profiler, whose start
is instant) the ``device_*`` columns add the GPU kernel time launched inside each range
(host time there is mostly launch time). Profiling itself slows small ops down: compare parts
with each other within one run, not with timings taken without the profiler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pandas as pd
    import torch

logger = logging.getLogger(__name__)

CALL_RANGE = re.compile(r"^sah\.call\[layer=(-?\d+|None)\]$")
PART_PREFIXES = ("sah.plan", "sah.masker[", "sah.attention", "sah.metrics")
BACKEND_MARKER = "sah.backend:"
#: Column order of the tables (``device_*`` only when CUDA was profiled).
COLUMNS = (
    "layer",
    "part",
    "calls",
    "cpu_ms",
    "cpu_us_per_call",
    "cpu_share",
    "device_ms",
    "device_us_per_call",
    "device_share",
    "ops_per_call",
)
FILLER = (
    "The archive keeps letters, ledgers and maps from the old harbour town. Each shelf holds "
    "boxes sorted by year, and every box lists the names of the ships that came and went. "
)
QUESTION = " Question: which ships are listed in the archive? Answer:"


@dataclass
class ProfileResult:
    """Tables of one profiled run (pandas DataFrames) and the profiler object."""

    table: pd.DataFrame
    summary: pd.DataFrame
    profiler: Any
    wall_ms: float
    device: str

    def write(self, out_dir: str | Path, top_ops: int = 30) -> dict[str, Path]:
        """Write trace.json, profile.csv/.md, summary.csv/.md and ops.txt into ``out_dir``."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"--out {str(out)!r} cannot be created: {error}") from None
        paths = {
            "trace": out / "trace.json",
            "table_csv": out / "profile.csv",
            "table_md": out / "profile.md",
            "summary_csv": out / "summary.csv",
            "summary_md": out / "summary.md",
            "ops": out / "ops.txt",
        }
        self.profiler.export_chrome_trace(str(paths["trace"]))
        self.table.to_csv(paths["table_csv"], index=False)
        paths["table_md"].write_text(to_markdown(self.table))
        self.summary.to_csv(paths["summary_csv"], index=False)
        paths["summary_md"].write_text(to_markdown(self.summary))
        sort_by = "self_device_time_total" if self.device == "cuda" else "self_cpu_time_total"
        ops = self.profiler.key_averages().table(sort_by=sort_by, row_limit=top_ops)
        paths["ops"].write_text(ops + "\n")
        return paths


# --------------------------------------------------------------------------- tables


def _device_time(event: Any) -> float:
    value = getattr(event, "device_time_total", None)
    if value is None:  # older torch spelling
        value = getattr(event, "cuda_time_total", 0.0)
    return float(value or 0.0)


def _walk(event: Any) -> Iterator[Any]:
    for child in event.cpu_children:
        yield child
        yield from _walk(child)


def count_ops(event: Any) -> int:
    """Top-level ``aten::`` ops inside ``event``: those no other aten op called."""
    total = 0
    for child in event.cpu_children:
        if child.name.startswith("aten::"):
            total += 1
        else:
            total += count_ops(child)
    return total


def _part_name(event: Any) -> str | None:
    name = str(event.name)
    if name == "sah.attention":
        backends = [c.name for c in _walk(event) if c.name.startswith(BACKEND_MARKER)]
        return "attention:" + (backends[0][len(BACKEND_MARKER) :] if backends else "?")
    if name.startswith(PART_PREFIXES):
        return name[len("sah.") :]
    return None


def _parts(call: Any) -> Iterator[tuple[str, Any]]:
    """The labelled parts directly under a call (not ranges nested inside a part)."""
    for child in call.cpu_children:
        part = _part_name(child)
        if part is not None:
            yield part, child
        elif not child.name.startswith("aten::"):
            yield from _parts(child)


def rows_from_events(events: Iterable[Any], with_device: bool) -> list[dict[str, Any]]:
    """One record per (layer, part) from the profiler's events (see the module doc)."""
    acc: dict[tuple[int, str], dict[str, float]] = {}

    def add(layer: int, part: str, cpu: float, device: float, ops: int) -> None:
        slot = acc.setdefault((layer, part), {"calls": 0, "cpu": 0.0, "device": 0.0, "ops": 0})
        slot["calls"] += 1
        slot["cpu"] += cpu
        slot["device"] += device
        slot["ops"] += ops

    for event in events:
        match = CALL_RANGE.match(event.name)
        if match is None:
            continue
        layer = -1 if match.group(1) == "None" else int(match.group(1))
        call_cpu = float(event.time_range.elapsed_us())
        call_device = _device_time(event) if with_device else 0.0
        call_ops = count_ops(event)
        add(layer, "call", call_cpu, call_device, call_ops)
        rest_cpu, rest_device, rest_ops = call_cpu, call_device, call_ops
        for part, child in _parts(event):
            cpu = float(child.time_range.elapsed_us())
            device = _device_time(child) if with_device else 0.0
            ops = count_ops(child)
            add(layer, part, cpu, device, ops)
            rest_cpu, rest_device, rest_ops = rest_cpu - cpu, rest_device - device, rest_ops - ops
        add(layer, "other", max(rest_cpu, 0.0), max(rest_device, 0.0), max(rest_ops, 0))
    rows = []
    for (layer, part), slot in acc.items():
        call = acc[(layer, "call")]
        calls = int(slot["calls"])
        row: dict[str, Any] = {
            "layer": layer,
            "part": part,
            "calls": calls,
            "cpu_ms": slot["cpu"] / 1e3,
            "cpu_us_per_call": slot["cpu"] / calls,
            "cpu_share": slot["cpu"] / call["cpu"] if call["cpu"] else 0.0,
            "ops_per_call": slot["ops"] / calls,
        }
        if with_device:
            row["device_ms"] = slot["device"] / 1e3
            row["device_us_per_call"] = slot["device"] / calls
            row["device_share"] = slot["device"] / call["device"] if call["device"] else 0.0
        rows.append(row)
    return rows


def _part_order(part: str) -> tuple[int, str]:
    order = {"call": 0, "plan": 1, "metrics": 4, "other": 5}
    if part.startswith("masker["):
        index = part[len("masker[") : part.index("]")]
        return 2, f"{int(index):04d}"
    if part.startswith("attention:"):
        return 3, part
    return order.get(part, 6), part


def build_tables(
    rows: list[dict[str, Any]], with_device: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-layer table, summary over layers) as DataFrames in :data:`COLUMNS` order."""
    import pandas as pd

    columns = [c for c in COLUMNS if with_device or not c.startswith("device_")]
    if not rows:
        empty = pd.DataFrame(columns=columns)
        return empty, empty.drop(columns=["layer"])
    table = pd.DataFrame(rows)
    table["_order"] = table["part"].map(_part_order)
    table = table.sort_values(["layer", "_order"]).drop(columns="_order")[columns]
    sums = {"calls": "sum", "cpu_ms": "sum", "ops_per_call": "mean"}
    if with_device:
        sums["device_ms"] = "sum"
    weighted = table.assign(_ops=table["ops_per_call"] * table["calls"])
    summary = weighted.groupby("part", sort=False).agg({**sums, "_ops": "sum"}).reset_index()
    summary["ops_per_call"] = summary["_ops"] / summary["calls"]
    call_cpu = float(summary.loc[summary["part"] == "call", "cpu_ms"].sum())
    summary["cpu_us_per_call"] = summary["cpu_ms"] * 1e3 / summary["calls"]
    summary["cpu_share"] = summary["cpu_ms"] / call_cpu if call_cpu else 0.0
    if with_device:
        call_device = float(summary.loc[summary["part"] == "call", "device_ms"].sum())
        summary["device_us_per_call"] = summary["device_ms"] * 1e3 / summary["calls"]
        summary["device_share"] = summary["device_ms"] / call_device if call_device else 0.0
    summary["_order"] = summary["part"].map(_part_order)
    summary = summary.sort_values("_order")[[c for c in columns if c != "layer"]]
    return table.reset_index(drop=True), summary.reset_index(drop=True)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (shares as percentages, times with 3 significant places)."""
    shown = frame.copy()
    for column in shown.columns:
        if column.endswith("_share"):
            shown[column] = shown[column].map(lambda v: f"{100 * v:.1f}%")
        elif column.endswith(("_ms", "_per_call")):
            shown[column] = shown[column].map(lambda v: f"{v:.3g}")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = [header, rule]
    for values in shown.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- running


def _profile(run: Callable[[], None], device: str) -> tuple[Any, float]:
    import time

    import torch

    profiler: Any
    if device == "cuda":
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        profiler = torch.profiler.profile(activities=activities, record_shapes=False)
    else:
        # the autograd profiler without kineto records the same ranges and ops on the CPU;
        # kineto's first start takes 10-20 s on a CUDA build of torch without a GPU driver
        profiler = torch.autograd.profiler.profile(use_kineto=False)
    with profiler as prof:
        started = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - started) * 1e3
    return prof, wall_ms


def _result(prof: Any, wall_ms: float, device: str) -> ProfileResult:
    with_device = device == "cuda"
    events = prof.events() if hasattr(prof, "events") else prof.function_events
    rows = rows_from_events(events, with_device)
    if not rows:
        raise ValueError(
            "the profile holds no sparse-attention layer call (no 'sah.call[...]' range): a "
            "dense config runs the model's own attention, and a stack acts only in its phases; "
            "give a sparse config (--config FILE)"
        )
    table, summary = build_tables(rows, with_device)
    return ProfileResult(table, summary, prof, wall_ms, device)


def _device_kind(device: Any) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def profile_decode(
    sparse_config: Any,
    keys: int,
    *,
    heads: int = 32,
    kv_heads: int = 8,
    head_dim: int = 128,
    layers: int = 2,
    steps: int = 8,
    warmup: int = 2,
    batch: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int = 0,
) -> ProfileResult:
    """Profile ``steps`` decode steps of ``layers`` layer calls on random tensors.

    Each step adds one key per layer (``keys`` keys at the first profiled step, after
    ``warmup`` unprofiled steps that fill the maskers' per-layer state).
    """
    import torch

    from sah_core import ResearchAttention, ResearchAttentionConfig

    for name, value, low in (
        ("keys", keys, 1),
        ("heads", heads, 1),
        ("kv_heads", kv_heads, 1),
        ("head_dim", head_dim, 1),
        ("layers", layers, 1),
        ("steps", steps, 1),
        ("warmup", warmup, 0),
        ("batch", batch, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed: use an int >= {low}")
    if heads % kv_heads:
        raise ValueError(
            f"heads={heads} / kv_heads={kv_heads} is not allowed: heads must be a multiple of "
            "kv_heads"
        )
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise ValueError(f"dtype={dtype!r} is not allowed: use one of {sorted(dtypes)}")
    if not isinstance(sparse_config, ResearchAttentionConfig):
        raise ValueError(
            f"sparse_config={type(sparse_config).__name__} is not allowed: expected a "
            "ResearchAttentionConfig"
        )
    if warmup >= keys:
        raise ValueError(
            f"warmup={warmup} is not allowed with keys={keys}: the warm-up steps start at "
            "keys - warmup keys, so use warmup < keys"
        )
    torch_device = torch.device(device)
    kind = _device_kind(torch_device)
    attention = ResearchAttention.create_from_config(sparse_config)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(torch_device, dtypes[dtype])

    longest = keys + steps
    cache = [
        (rand(batch, kv_heads, longest, head_dim), rand(batch, kv_heads, longest, head_dim))
        for _ in range(layers)
    ]
    queries = rand(warmup + steps, batch, heads, 1, head_dim)
    state: dict[Any, Any] = {}
    scaling = head_dim**-0.5

    def step(index: int) -> None:
        length = keys - warmup + index  # one new key per step; `keys` at the first profiled
        for layer, (k, v) in enumerate(cache):
            attention.custom_attention(
                None,
                queries[index],
                k[:, :, :length],
                v[:, :, :length],
                None,
                scaling,
                sparse_meta_data=state,
                layer_idx=layer,
            )

    with torch.no_grad():
        for index in range(warmup):
            step(index)

        def run() -> None:
            with torch.no_grad():
                for index in range(warmup, warmup + steps):
                    step(index)

        prof, wall_ms = _profile(run, kind)
    return _result(prof, wall_ms, kind)


def synthetic_context(tokenizer: Any, tokens: int) -> str:
    """A filler context of about ``tokens`` tokens of ``tokenizer`` (cut at a token edge)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"context_tokens={tokens!r} is not allowed: use an int >= 1")
    text = FILLER
    while len(tokenizer.encode(text, add_special_tokens=False)) < tokens:
        text += text
    ids = tokenizer.encode(text, add_special_tokens=False)[:tokens]
    return str(tokenizer.decode(ids))


def profile_request(
    adapter: Any,
    context_tokens: int = 1024,
    *,
    max_new_tokens: int = 8,
    question: str = QUESTION,
    warmup: bool = True,
) -> ProfileResult:
    """Profile one request (a filler context of ``context_tokens`` tokens, one question) on a
    ``ModelAdapterHF``; a first unprofiled run warms the model up when ``warmup``."""
    from sah_protocol import Request

    request = Request(
        context=synthetic_context(adapter.tokenizer, context_tokens), questions=question
    )
    generation = {"max_new_tokens": max_new_tokens}
    if warmup:
        adapter.process_request(request, {"max_new_tokens": 1})

    def run() -> None:
        adapter.process_request(request, generation)

    device = next(adapter.model.parameters()).device
    kind = _device_kind(device)
    prof, wall_ms = _profile(run, kind)
    return _result(prof, wall_ms, kind)


def summary_line(result: ProfileResult) -> str:
    """One line: profiled wall time, layer-call time and its share."""
    summary = result.summary
    call = summary[summary["part"] == "call"].iloc[0]
    return (
        f"{int(call['calls'])} sparse layer calls, {call['cpu_ms']:.1f} ms host time in them "
        f"({100 * call['cpu_ms'] / result.wall_ms:.1f}% of {result.wall_ms:.0f} ms profiled)"
    )


def _check_device(device: str) -> str:
    import torch

    name = device.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or re.match(r"^cuda:\d+$", name):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device!r} is not allowed: CUDA is not available here")
        return name
    raise ValueError(f"--device {device!r} is not allowed: use cpu, cuda, cuda:N or auto")


def load_config(path: str | None) -> Any:
    """A ``ResearchAttentionConfig`` from a JSON file (None / ``"dense"`` -> no maskers)."""
    from sah_bench.run_config import load_sparse_config
    from sah_core import ResearchAttentionConfig

    if path is None or path == "dense":
        return None
    _, data = load_sparse_config(path, None)
    if data is None:
        return None
    return ResearchAttentionConfig.from_dict(data)


# --------------------------------------------------------------------------- CLI


def profile_command(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to run a request through (or --decode-keys)."),
    ] = None,
    config: Annotated[
        str, typer.Option("--config", "-c", help="Sparse config JSON file (or 'dense').")
    ] = "dense",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for trace.json and the tables.")
    ] = Path("sah_profile"),
    context_tokens: Annotated[
        int, typer.Option(min=1, help="Request mode: context length in model tokens.")
    ] = 1024,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Request mode: answer tokens.")] = 8,
    decode_keys: Annotated[
        int | None,
        typer.Option(
            "--decode-keys", min=1, help="Synthetic decode on random tensors at K keys (no model)."
        ),
    ] = None,
    heads: Annotated[int, typer.Option(min=1, help="Decode mode: query heads.")] = 32,
    kv_heads: Annotated[int, typer.Option(min=1, help="Decode mode: key/value heads.")] = 8,
    head_dim: Annotated[int, typer.Option(min=1, help="Decode mode: head dim.")] = 128,
    layers: Annotated[int, typer.Option(min=1, help="Decode mode: layers per step.")] = 2,
    steps: Annotated[int, typer.Option(min=1, help="Decode mode: profiled steps.")] = 8,
    batch: Annotated[int, typer.Option(min=1, help="Decode mode: batch size.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    dtype: Annotated[
        str | None, typer.Option(help="bfloat16, float16 or float32 (default float32).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Printed table: markdown or csv.")] = (
        "markdown"
    ),
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="Print the per-layer table, not the summary.")
    ] = False,
) -> None:
    """Profile a request or a synthetic decode: Chrome trace, time per masker and backend.

    Per layer: each part's time as a share of the layer call, and torch ops per call.
    """
    from sah_bench.cli import _fail

    logging.basicConfig(level=logging.WARNING)
    if fmt not in ("markdown", "csv"):
        raise _fail(f"--format {fmt!r} is not allowed; use 'markdown' or 'csv'")
    if (model is None) == (decode_keys is None):
        raise _fail("give exactly one of --model (a request) and --decode-keys (synthetic decode)")
    try:
        sparse = load_config(config)
        resolved = _check_device(device)
        if decode_keys is not None:
            from sah_core import ResearchAttentionConfig

            result = profile_decode(
                sparse if sparse is not None else ResearchAttentionConfig(),
                decode_keys,
                heads=heads,
                kv_heads=kv_heads,
                head_dim=head_dim,
                layers=layers,
                steps=steps,
                warmup=min(2, decode_keys - 1),
                batch=batch,
                device=resolved,
                dtype=dtype or "float32",
            )
        else:
            if sparse is None:
                raise ValueError(
                    f"--config {config!r} is dense: the model then runs its own attention, "
                    "which has no sparse-attention parts to profile; give a sparse config file"
                )
            assert model is not None
            result = _profile_model(model, sparse, resolved, dtype, context_tokens, max_new_tokens)
        paths = result.write(out)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    shown = result.table if per_layer else result.summary
    typer.echo(to_markdown(shown) if fmt == "markdown" else shown.to_csv(index=False), nl=False)
    typer.echo(summary_line(result))
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def _profile_model(
    model: str,
    sparse: Any,
    device: str,
    dtype: str | None,
    context_tokens: int,
    max_new_tokens: int,
) -> ProfileResult:
    from sah_adapters import ModelAdapterHF

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        adapter = ModelAdapterHF(
            model, sparse, model_kwargs=kwargs, device=device, safetensors_only=True
        )
    except (OSError, ValueError) as error:
        raise ValueError(f"model {model!r} could not be loaded: {error}") from None
    with adapter:
        return profile_request(adapter, context_tokens, max_new_tokens=max_new_tokens)
