"""Reading run files (YAML or JSON) and sparse-config files for the CLI.

A run file may hold::

    models: [smollm2-135m]
    configs: {dense: null, sink_local: configs/sink_local.json}   # or a list of paths / "dense"
    benchmarks: ["synthetic:niah_single,vt", {name: longbench, subsets: [qasper],
                 options: {data_path: data/longbench}}]
    out: results/
    max_requests: 10
    devices: [cuda:0, cuda:1]      # or [0, 1], [cpu], [cuda], [auto]
    dtype: bfloat16                # bfloat16 | float16 | float32 | auto
    backend: local
    metrics: [density, output_error, mass_recall]
    data_dir: /data/hub-snapshots  # <data_dir>/<owner>/<name> per benchmark
    model_kwargs: {attn_implementation: eager}
    request_kwargs: {max_context_length: 32000, truncation: middle, batch_size: 4}
    generation_kwargs: {max_new_tokens: 64}

Every value is type-checked (``pydantic``, strict: ``'5'`` is not an int and a string is not a
list) before anything runs; a bad one gives one message naming the key, the value and what is
allowed. A sparse-config file is the JSON of ``ResearchAttentionConfig.to_dict()``; ``dense``
(no file) means dense attention.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from sah_bench.executor.executor import BACKENDS, BenchmarkSpec
from sah_bench.registry import get_benchmark_class

DENSE = "dense"
DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32", "auto")
#: Options the executor itself reads (every benchmark accepts them).
EXECUTOR_OPTIONS = frozenset({"measure_with_model_tokenizer"})

#: What each run-file key allows, quoted in its error message.
ALLOWED: dict[str, str] = {
    "models": "a list of model names, e.g. [smollm2-135m]",
    "configs": "a list of config files / 'dense', or a mapping name -> file | config | null",
    "benchmarks": "a list of 'name[:sub1,sub2]' strings or {name, subsets, options} mappings",
    "out": "a folder path (str)",
    "max_requests": "an int >= 1",
    "devices": "a list of 'cpu', 'cuda', 'cuda:N', 'auto' or GPU indices N, e.g. [0, 1]",
    "dtype": f"one of {list(DTYPES)}",
    "backend": f"one of {list(BACKENDS)}",
    "metrics": "a list of density, output_error, mass_recall (attention_mass_recall)",
    "data_dir": "a folder path (str)",
    "model_kwargs": "a mapping of from_pretrained keyword arguments",
    "request_kwargs": "a mapping (batch_size, max_context_length, truncation, use_chat_template)",
    "generation_kwargs": "a mapping (max_new_tokens, do_sample, temperature, top_p, ...)",
    "gpus_per_cell": "a number >= 0",
    "ray_address": "a Ray cluster address (str)",
}


class RunFile(BaseModel):
    """The typed contents of a run file (every key optional; flags override them)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    models: list[StrictStr] | None = None
    configs: list[StrictStr] | dict[StrictStr, Any] | None = None
    benchmarks: list[Any] | None = None
    out: StrictStr | None = None
    max_requests: Annotated[StrictInt, Field(ge=1)] | None = None
    devices: list[StrictStr | StrictInt] | None = None
    dtype: Literal["bfloat16", "float16", "float32", "auto"] | None = None
    backend: Literal["inline", "local", "ray"] | None = None
    metrics: list[StrictStr] | None = None
    data_dir: StrictStr | None = None
    model_kwargs: dict[StrictStr, Any] | None = None
    request_kwargs: dict[StrictStr, Any] | None = None
    generation_kwargs: dict[StrictStr, Any] | None = None
    gpus_per_cell: Annotated[StrictFloat | StrictInt, Field(ge=0)] | None = None
    ray_address: StrictStr | None = None


RUN_FILE_KEYS = frozenset(RunFile.model_fields)


def read_structured_file(path: Path, what: str) -> Any:
    """Parse a YAML or JSON file; any problem -> ValueError naming the file."""
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be read: {exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # yaml and json raise different error types
        raise ValueError(f"{what} {str(path)!r} is malformed: {exc}") from None


def _masker_types() -> list[str]:
    from sah_core.maskers.registry import known_tags, load_plugins

    load_plugins()
    return known_tags()


def _check_masker_tags(data: dict[str, Any], source: str) -> None:
    """A clearer message than sah_core's for the abstract base tag ``MaskerConfig``."""
    if data.get("type") == "MaskerConfig":
        raise ValueError(
            f"sparse config {source}: top-level 'type'='MaskerConfig' is not allowed: a sparse "
            "config file holds {'type': 'ResearchAttentionConfig', 'masker_configs': [...]}"
        )
    entries = data.get("masker_configs")
    if not isinstance(entries, list):
        return
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("type") == "MaskerConfig":
            raise ValueError(
                f"sparse config {source}: masker_configs[{i}]['type']='MaskerConfig' is the "
                f"abstract base, not a masker; allowed: {_masker_types()}"
            )


def validate_sparse_config(data: Any, source: str) -> dict[str, Any]:
    """Check a ``ResearchAttentionConfig.to_dict()`` dict with sah_core (unknown masker, bad
    field -> ValueError naming the source)."""
    if not isinstance(data, dict):
        raise ValueError(
            f"sparse config {source}: expected a JSON object from ResearchAttentionConfig."
            f"to_dict(), got {type(data).__name__}"
        )
    _check_masker_tags(data, source)
    from sah_core import ResearchAttentionConfig

    try:
        return ResearchAttentionConfig.from_dict(data).to_dict()
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"sparse config {source}: {exc}") from None


def load_sparse_config(spec: str | Path, base: Path | None = None) -> tuple[str, Any]:
    """``"dense"`` -> ``("dense", None)``; a JSON path -> ``(file stem, validated dict)``.

    A file named ``dense.json`` must hold a config without maskers (it would be reported as
    "dense" in the leaderboard otherwise); it then means dense attention.
    """
    if str(spec) == DENSE:
        return DENSE, None
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = base / path
    data = read_structured_file(path, "sparse config file")
    config = validate_sparse_config(data, repr(str(path)))
    if path.stem == DENSE:
        if config.get("masker_configs"):
            raise ValueError(
                f"sparse config file {str(path)!r} is named 'dense' but holds maskers; "
                "the name 'dense' is reserved for dense attention: rename the file"
            )
        return DENSE, None
    return path.stem, config


def configs_in_dir(folder: str | Path) -> list[str]:
    """The ``*.json`` sparse-config files of ``folder`` (sorted), e.g. a search's ``best/``."""
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"--configs-dir {str(path)!r} is not a folder")
    files = sorted(str(p) for p in path.glob("*.json") if p.is_file())
    if not files:
        raise ValueError(f"--configs-dir {str(path)!r} holds no *.json sparse config file")
    return files


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
            elif isinstance(item, str):
                configs[str(name)] = load_sparse_config(item, base)[1]
            else:
                raise ValueError(
                    f"configs[{name!r}]={item!r:.80} is not allowed: use a file path, a config "
                    "mapping or null (dense)"
                )
        return configs
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise ValueError(
                    f"configs entry {item!r:.80} is not allowed: use a file path or 'dense'"
                )
            name, config = load_sparse_config(item, base)
            if name in configs:
                raise ValueError(f"two sparse configs are both named {name!r}; rename one file")
            configs[name] = config
        return configs
    raise ValueError(f"run file 'configs' must be a list or a mapping, got {value!r:.80}")


def parse_benchmarks(value: Any) -> list[BenchmarkSpec]:
    """Benchmark entries: ``"name[:sub1,sub2]"`` or ``{name, subsets: [..], options: {..}}``."""
    if not isinstance(value, list):
        raise ValueError(
            f"benchmarks={value!r:.80} must be a list; allowed: {ALLOWED['benchmarks']}"
        )
    specs = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            specs.append(BenchmarkSpec.parse(item))
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(
                f"benchmarks[{i}]={item!r:.80} is not allowed: use 'name[:sub1,sub2]' or "
                "{name, subsets, options}"
            )
        unknown = sorted(set(item) - {"name", "subsets", "options"})
        if unknown:
            raise ValueError(
                f"benchmarks[{i}] has unknown key(s) {unknown}; allowed: name, subsets, options"
            )
        subsets = item.get("subsets")
        if subsets is not None and (
            not isinstance(subsets, list) or not all(isinstance(s, str) for s in subsets)
        ):
            raise ValueError(
                f"benchmarks[{i}].subsets={subsets!r:.80} must be a list of subset names, "
                f"e.g. [{subsets!s:.40}]"
            )
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"benchmarks[{i}].options={options!r:.80} must be a mapping")
        specs.append(
            BenchmarkSpec(str(item["name"]), tuple(subsets) if subsets else None, dict(options))
        )
    return specs


def benchmark_option_names(name: str) -> frozenset[str] | None:
    """The options benchmark ``name`` accepts (None: any, its constructor takes ``**kwargs``)."""
    params = inspect.signature(get_benchmark_class(name).__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(p for p in params if p != "self") | EXECUTOR_OPTIONS


def apply_options(
    specs: list[BenchmarkSpec],
    flag_options: list[str],
    data_dir: str | None = None,
) -> list[BenchmarkSpec]:
    """Give each benchmark its options and check them against its constructor.

    ``--bench-option KEY=VALUE`` goes to every benchmark that accepts ``KEY`` (an error when
    none does); ``NAME.KEY=VALUE`` only to benchmark ``NAME``. ``data_dir`` goes to every
    benchmark that reads one. An option a benchmark does not accept -> ValueError naming it.
    """
    allowed = {s.name: benchmark_option_names(s.name) for s in specs}

    def accepts(name: str, key: str) -> bool:
        names = allowed[name]
        return names is None or key in names

    extra: dict[int, dict[str, Any]] = {i: {} for i in range(len(specs))}
    for text in flag_options:
        key, value = parse_option(text)
        scope, dot, bare = key.partition(".")
        if dot and scope in allowed:
            targets = [i for i, s in enumerate(specs) if s.name == scope]
            key = bare
        elif dot and scope not in allowed and scope.isidentifier() and bare:
            raise ValueError(
                f"--bench-option {text!r}: benchmark {scope!r} is not in this run; "
                f"benchmarks here: {sorted(allowed)}"
            )
        else:
            targets = [i for i, s in enumerate(specs) if accepts(s.name, key)]
            if not targets:
                raise ValueError(
                    f"--bench-option {text!r}: no benchmark of this run accepts option "
                    f"{key!r}; allowed: "
                    + "; ".join(f"{n}: {sorted(a or [])}" for n, a in sorted(allowed.items()))
                )
        for i in targets:
            extra[i][key] = value
    if data_dir is not None:
        readers = [i for i, s in enumerate(specs) if accepts(s.name, "data_dir")]
        if not readers:
            raise ValueError(
                f"--data-dir {data_dir!r}: no benchmark of this run reads a data dir "
                f"(benchmarks: {sorted(allowed)})"
            )
        for i in readers:
            extra[i].setdefault("data_dir", data_dir)
    out = []
    for i, spec in enumerate(specs):
        options = {**dict(spec.options), **extra[i]}
        names = allowed[spec.name]
        unknown = sorted(k for k in options if names is not None and k not in names)
        if unknown:
            raise ValueError(
                f"benchmark {spec.name!r} has no option(s) {unknown}; "
                f"allowed: {sorted(names or [])}"
            )
        out.append(BenchmarkSpec(spec.name, spec.subsets, options))
    return out


def _format_validation_error(path: Path, error: PydanticValidationError) -> str:
    problems = []
    for item in error.errors():
        loc = item["loc"]
        key = str(loc[0]) if loc else "?"
        where = key + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in loc[1:])
        # The union of list and mapping reports one error per member; name the key once.
        problems.append(
            f"key {where!r} = {item.get('input')!r:.60}: {item['msg']}; "
            f"allowed: {ALLOWED.get(key, 'see the run-file docs')}"
        )
    unique = list(dict.fromkeys(problems))
    return f"run file {str(path)!r}: " + " | ".join(unique[:3])


def load_run_file(path: Path) -> RunFile:
    """The run file, parsed and type-checked (ValueError naming key, value and what is
    allowed)."""
    data = read_structured_file(path, "run file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"run file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - RUN_FILE_KEYS)
    if unknown:
        raise ValueError(
            f"run file {str(path)!r} has unknown key(s) {unknown}; allowed: {sorted(RUN_FILE_KEYS)}"
        )
    try:
        return RunFile.model_validate(data)
    except PydanticValidationError as exc:
        raise ValueError(_format_validation_error(path, exc)) from None


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
