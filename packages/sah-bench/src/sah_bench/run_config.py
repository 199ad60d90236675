"""Reading run files (YAML or JSON) and sparse-config files for the CLI.

A run file may hold::

    models: [smollm2-135m]
    configs: {dense: null, sink_local: configs/sink_local.json}   # or a list of paths / "dense"
    benchmarks: ["synthetic:niah_single,vt", {name: longbench, subsets: [qasper],
                 options: {data_path: data/longbench}}]
    out: results/
    max_requests: 10
    devices: [0, 1]
    backend: local
    generation_kwargs: {max_new_tokens: 64}

A sparse-config file is the JSON of ``ResearchAttentionConfig.to_dict()``; ``dense`` (no file)
means dense attention.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sah_bench.executor.executor import BenchmarkSpec

DENSE = "dense"
RUN_FILE_KEYS = frozenset(
    {
        "models",
        "configs",
        "benchmarks",
        "out",
        "max_requests",
        "devices",
        "backend",
        "generation_kwargs",
        "gpus_per_cell",
        "ray_address",
    }
)


def read_structured_file(path: Path, what: str) -> Any:
    """Parse a YAML or JSON file; any problem -> ValueError naming the file."""
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # yaml and json raise different error types
        raise ValueError(f"{what} {str(path)!r} is malformed: {exc}") from None


def validate_sparse_config(data: Any, source: str) -> dict[str, Any]:
    """Check a ``ResearchAttentionConfig.to_dict()`` dict with sah_core (unknown masker, bad
    field -> ValueError naming the source)."""
    if not isinstance(data, dict):
        raise ValueError(
            f"sparse config {source}: expected a JSON object from ResearchAttentionConfig."
            f"to_dict(), got {type(data).__name__}"
        )
    from sah_core import ResearchAttentionConfig

    try:
        return ResearchAttentionConfig.from_dict(data).to_dict()
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"sparse config {source}: {exc}") from None


def load_sparse_config(spec: str | Path, base: Path | None = None) -> tuple[str, Any]:
    """``"dense"`` -> ``("dense", None)``; a JSON path -> ``(file stem, validated dict)``."""
    if str(spec) == DENSE:
        return DENSE, None
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = base / path
    data = read_structured_file(path, "sparse config file")
    return path.stem, validate_sparse_config(data, repr(str(path)))


def parse_configs(value: Any, base: Path | None) -> dict[str, Any]:
    """Configs of a run file: a list of paths / ``"dense"``, or a mapping name -> path | dict |
    null."""
    configs: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for name, item in value.items():
            if item is None or item == DENSE:
                configs[str(name)] = None
            elif isinstance(item, Mapping):
                configs[str(name)] = validate_sparse_config(dict(item), f"{name!r}")
            else:
                configs[str(name)] = load_sparse_config(str(item), base)[1]
        return configs
    if isinstance(value, list):
        for item in value:
            name, config = load_sparse_config(str(item), base)
            if name in configs:
                raise ValueError(f"two sparse configs are both named {name!r}; rename one file")
            configs[name] = config
        return configs
    raise ValueError(f"run file 'configs' must be a list or a mapping, got {value!r:.80}")


def parse_benchmarks(value: Any, options: Mapping[str, Any] | None = None) -> list[BenchmarkSpec]:
    if not isinstance(value, list):
        value = [value]
    specs = []
    for item in value:
        if isinstance(item, str):
            specs.append(BenchmarkSpec.parse(item, options))
        elif isinstance(item, Mapping) and "name" in item:
            subsets = item.get("subsets")
            merged = {**dict(options or {}), **dict(item.get("options") or {})}
            specs.append(
                BenchmarkSpec(str(item["name"]), tuple(subsets) if subsets else None, merged)
            )
        else:
            raise ValueError(
                f"benchmark entry {item!r:.80} is not allowed: use 'name[:sub1,sub2]' or "
                "{name, subsets, options}"
            )
    return specs


def load_run_file(path: Path) -> dict[str, Any]:
    data = read_structured_file(path, "run file")
    if not isinstance(data, dict):
        raise ValueError(f"run file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - RUN_FILE_KEYS)
    if unknown:
        raise ValueError(
            f"run file {str(path)!r} has unknown key(s) {unknown}; allowed: {sorted(RUN_FILE_KEYS)}"
        )
    return data


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value when it parses (``num_samples=4`` -> 4), else a str."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"benchmark option {text!r} is not allowed: use KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value
