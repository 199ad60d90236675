"""A registry of named models, declared in TOML or YAML files.

An entry names where the weights are and how to load them::

    [models.llama8b-4bit]
    source = "meta-llama/Llama-3.1-8B-Instruct"   # hub id, local folder or "builtin:NAME"
    model_class = "AutoModelForCausalLM"            # a transformers class (default)
    dtype = "bfloat16"                              # bfloat16 | float16 | float32 | auto
    description = "Llama 3.1 8B, 4-bit NF4"
    use_chat_template = true                        # false: plain text prompts
    # chat_template = "{% for m in messages %}..."  # replaces the tokenizer's template
    [models.llama8b-4bit.model_kwargs]              # from_pretrained kwargs
    attn_implementation = "sdpa"
    [models.llama8b-4bit.tokenizer_kwargs]
    use_fast = true
    [models.llama8b-4bit.quantization]              # -> transformers' quantization config
    method = "bitsandbytes"                         # bitsandbytes | fp8
    load_in_4bit = true
    bnb_4bit_quant_type = "nf4"
    bnb_4bit_compute_dtype = "bfloat16"

YAML files use the same layout (a top-level ``models:`` mapping). Files are read in order:
the shipped ``models.toml`` (the built-in offline models), then the files in the ``SAH_MODELS``
environment variable (separated by ``os.pathsep``), then files given in code
(``--models FILE`` on the CLI); an entry replaces an earlier entry of the same name as a
whole. Every field is checked when a file is read; errors name the file, the entry, the field,
the value and what is allowed.

``ModelAdapterHF(model_name=NAME)`` looks NAME up here first (an existing local folder of that
name wins): its ``dtype`` applies unless the adapter is given one, and the adapter's own
``model_kwargs`` / ``tokenizer_kwargs`` override the entry's.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import re
import threading
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Environment variable: registry files to merge (separated by ``os.pathsep``).
MODELS_ENV_VAR = "SAH_MODELS"
SHIPPED_FILE = Path(__file__).with_name("models.toml")
BUILTIN_PREFIX = "builtin:"
#: ``quantization.method`` -> the transformers config class it builds.
QUANTIZATION_METHODS = {"bitsandbytes": "BitsAndBytesConfig", "fp8": "FineGrainedFP8Config"}
DTYPES = ("bfloat16", "float16", "float32", "auto")
FIELDS = (
    "source",
    "model_class",
    "dtype",
    "description",
    "model_kwargs",
    "tokenizer_kwargs",
    "quantization",
    "use_chat_template",
    "chat_template",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# model_kwargs keys that have their own field
_OWN_FIELD = {
    "dtype": "dtype",
    "torch_dtype": "dtype",
    "quantization_config": "quantization",
    "device": "the adapter's device argument",
    "device_map": "the adapter's device argument",
}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registry entry (validated); ``origin`` is the file it came from."""

    name: str
    source: str
    model_class: str = "AutoModelForCausalLM"
    dtype: str | None = None
    description: str = ""
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tokenizer_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    quantization: Mapping[str, Any] | None = None
    use_chat_template: bool | None = None
    chat_template: str | None = None
    origin: str = "<code>"

    @property
    def builtin(self) -> str | None:
        """The built-in offline model this entry loads, if its source is ``builtin:NAME``."""
        if self.source.startswith(BUILTIN_PREFIX):
            return self.source[len(BUILTIN_PREFIX) :]
        return None

    def quantization_config(self) -> Any | None:
        """The transformers quantization config object (None without ``quantization``)."""
        if self.quantization is None:
            return None
        return build_quantization_config(self.quantization, f"{self.origin}: models.{self.name}")

    def model_class_object(self) -> Any:
        """The transformers class named by ``model_class``."""
        import transformers

        found = getattr(transformers, self.model_class, None)
        if found is None or not hasattr(found, "from_pretrained"):
            raise ValueError(
                f"{self.origin}: models.{self.name}.model_class={self.model_class!r} is not "
                "allowed: use a transformers model class with from_pretrained, e.g. "
                "'AutoModelForCausalLM' or 'LlamaForCausalLM'"
            )
        return found


def _where(origin: str, name: str, field: str) -> str:
    return f"{origin}: models.{name}.{field}"


def build_quantization_config(
    spec: Mapping[str, Any], where: str, *, missing_package_ok: bool = False
) -> Any:
    """``{"method": ..., **fields}`` -> a transformers quantization config (checked).

    Some transformers versions check that the quantization package (e.g. ``bitsandbytes``) is
    installed when the config is built: then this raises a ValueError naming it, or returns
    None when ``missing_package_ok`` (reading a registry file on a machine that will not load
    that model).
    """
    import importlib.metadata

    import transformers

    method = spec.get("method")
    if method not in QUANTIZATION_METHODS:
        raise ValueError(
            f"{where}.quantization.method={method!r} is not allowed: use one of "
            f"{sorted(QUANTIZATION_METHODS)}"
        )
    cls = getattr(transformers, QUANTIZATION_METHODS[method])
    allowed = sorted(
        p
        for p, param in inspect.signature(cls.__init__).parameters.items()
        if p != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
    )
    fields = {k: v for k, v in spec.items() if k != "method"}
    for key in fields:
        if key not in allowed:
            raise ValueError(
                f"{where}.quantization.{key}={fields[key]!r} is not allowed for method "
                f"{method!r}: {QUANTIZATION_METHODS[method]} takes {allowed}"
            )
    try:
        return cls(**fields)
    except (importlib.metadata.PackageNotFoundError, ImportError) as error:
        if missing_package_ok:
            return None
        package = getattr(error, "name", None) or str(error)
        raise ValueError(
            f"{where}.quantization.method={method!r} needs the package {package!r}, which is "
            f"not installed here (install it, e.g. `pip install {method}`)"
        ) from None
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where}.quantization={dict(spec)!r} is not allowed: "
            f"{QUANTIZATION_METHODS[method]} says: {error}"
        ) from None


def parse_entry(name: Any, data: Any, origin: str) -> ModelEntry:
    """Validate one entry of a registry file."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{origin}: model name {name!r} is not allowed: use letters, digits, '.', '_' and "
            "'-' (starting with a letter or digit)"
        )
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{origin}: models.{name}={data!r:.80} is not allowed: an entry is a table of "
            f"fields {list(FIELDS)}"
        )
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"{_where(origin, name, unknown[0])}={data[unknown[0]]!r:.80} is not allowed: "
            f"unknown field; allowed fields are {list(FIELDS)}"
        )
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(
            f"{_where(origin, name, 'source')}={source!r} is not allowed: give a hub id, a "
            "local folder or 'builtin:NAME'"
        )
    if source.startswith(BUILTIN_PREFIX):
        from sah_adapters.builtin_models import BUILTIN_MODELS

        builtin = source[len(BUILTIN_PREFIX) :]
        if builtin not in BUILTIN_MODELS:
            raise ValueError(
                f"{_where(origin, name, 'source')}={source!r} is not allowed: built-in models "
                f"are {[BUILTIN_PREFIX + n for n in sorted(BUILTIN_MODELS)]}"
            )
    elif source.startswith(("./", "../")) and origin != "<code>":
        # a relative path is relative to the registry file, not to the working directory
        source = str((Path(origin).parent / source).resolve())
    model_class = data.get("model_class", "AutoModelForCausalLM")
    if not isinstance(model_class, str) or not _CLASS.match(model_class):
        raise ValueError(
            f"{_where(origin, name, 'model_class')}={model_class!r} is not allowed: use a "
            "transformers class name such as 'AutoModelForCausalLM'"
        )
    dtype = data.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(
            f"{_where(origin, name, 'dtype')}={dtype!r} is not allowed: use one of {list(DTYPES)}"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValueError(
            f"{_where(origin, name, 'description')}={description!r} is not allowed: use a string"
        )
    tables: dict[str, dict[str, Any]] = {}
    for field in ("model_kwargs", "tokenizer_kwargs"):
        value = data.get(field, {})
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValueError(
                f"{_where(origin, name, field)}={value!r:.80} is not allowed: use a table of "
                "keyword arguments"
            )
        tables[field] = copy.deepcopy(dict(value))
    for key, instead in _OWN_FIELD.items():
        if key in tables["model_kwargs"]:
            raise ValueError(
                f"{_where(origin, name, 'model_kwargs.' + key)}="
                f"{tables['model_kwargs'][key]!r:.80} is not allowed: use {instead} instead"
            )
    quantization = data.get("quantization")
    if quantization is not None:
        if not isinstance(quantization, Mapping):
            raise ValueError(
                f"{_where(origin, name, 'quantization')}={quantization!r:.80} is not allowed: "
                f"use a table with method = one of {sorted(QUANTIZATION_METHODS)}"
            )
        quantization = copy.deepcopy(dict(quantization))
        # checks the fields now; a missing quantization package only matters when loading
        build_quantization_config(quantization, f"{origin}: models.{name}", missing_package_ok=True)
    use_chat_template = data.get("use_chat_template")
    if use_chat_template is not None and not isinstance(use_chat_template, bool):
        raise ValueError(
            f"{_where(origin, name, 'use_chat_template')}={use_chat_template!r} is not "
            "allowed: use true or false"
        )
    chat_template = data.get("chat_template")
    if chat_template is not None and (not isinstance(chat_template, str) or not chat_template):
        raise ValueError(
            f"{_where(origin, name, 'chat_template')}={chat_template!r:.80} is not allowed: "
            "use a non-empty Jinja template string"
        )
    if chat_template is not None and use_chat_template is False:
        raise ValueError(
            f"{_where(origin, name, 'chat_template')} with use_chat_template=false is not "
            "allowed: give one of them"
        )
    return ModelEntry(
        name=name,
        source=source,
        model_class=model_class,
        dtype=dtype,
        description=description,
        model_kwargs=tables["model_kwargs"],
        tokenizer_kwargs=tables["tokenizer_kwargs"],
        quantization=quantization,
        use_chat_template=use_chat_template,
        chat_template=chat_template,
        origin=origin,
    )


def read_registry_file(path: str | os.PathLike[str]) -> dict[str, ModelEntry]:
    """The entries of one ``.toml`` / ``.yaml`` / ``.yml`` file."""
    file = Path(path).expanduser()
    origin = str(file)
    if not file.is_file():
        raise ValueError(f"model registry file {origin!r} is not allowed: no such file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(file.read_text())
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(file.read_text())
        else:
            raise ValueError(
                f"model registry file {origin!r} is not allowed: use a .toml, .yaml or .yml file"
            )
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"model registry file {origin!r} cannot be parsed: {error}") from None
    except Exception as error:  # yaml.YAMLError without importing yaml for TOML files
        if type(error).__module__.startswith("yaml"):
            raise ValueError(f"model registry file {origin!r} cannot be parsed: {error}") from None
        raise
    if data is None:
        data = {}
    if not isinstance(data, Mapping) or set(data) - {"models"}:
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(
            f"model registry file {origin!r} holds {keys}, which is not allowed: the only "
            "top-level key is 'models' (a table of name -> entry)"
        )
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise ValueError(
            f"{origin}: models={models!r:.80} is not allowed: use a table of name -> entry"
        )
    return {str(name): parse_entry(name, entry, origin) for name, entry in models.items()}


def env_files() -> list[str]:
    """The files named by ``SAH_MODELS`` (empty parts ignored)."""
    raw = os.environ.get(MODELS_ENV_VAR, "")
    return [part for part in raw.split(os.pathsep) if part.strip()]


class ModelRegistry:
    """Named models merged from files (later files win, entry by entry)."""

    def __init__(self, entries: Mapping[str, ModelEntry] | None = None) -> None:
        self.entries: dict[str, ModelEntry] = dict(entries or {})

    @classmethod
    def load(
        cls, files: Iterable[str | os.PathLike[str]] = (), *, shipped: bool = True
    ) -> ModelRegistry:
        """The shipped file (when ``shipped``), then ``SAH_MODELS``, then ``files``."""
        registry = cls()
        ordered: list[str | os.PathLike[str]] = [SHIPPED_FILE] if shipped else []
        ordered += [*env_files(), *files]
        for file in ordered:
            registry.merge(read_registry_file(file))
        return registry

    def merge(self, entries: Mapping[str, ModelEntry]) -> None:
        """Add ``entries``; one with a name already here replaces it as a whole."""
        self.entries.update(entries)

    def get(self, name: str) -> ModelEntry | None:
        return self.entries.get(name)

    def names(self) -> list[str]:
        return sorted(self.entries)


_lock = threading.Lock()
_extra_files: list[str] = []
_cached: tuple[tuple[str, ...], ModelRegistry] | None = None


def add_model_files(files: Sequence[str | os.PathLike[str]]) -> None:
    """Merge these files into this process's registry (after ``SAH_MODELS``); they are also
    appended to ``SAH_MODELS`` so worker processes started later see them. Read (and
    checked) at once."""
    global _cached
    paths = [str(Path(f).expanduser().resolve()) for f in files]
    for path in paths:
        read_registry_file(path)
    with _lock:
        _extra_files.extend(p for p in paths if p not in _extra_files)
        known = env_files()
        os.environ[MODELS_ENV_VAR] = os.pathsep.join(
            [*known, *(p for p in paths if p not in known)]
        )
        _cached = None


def active_registry() -> ModelRegistry:
    """This process's registry (re-read when ``SAH_MODELS`` or the added files change)."""
    global _cached
    with _lock:
        key = (os.environ.get(MODELS_ENV_VAR, ""), *_extra_files)
        if _cached is None or _cached[0] != key:
            extra = [f for f in _extra_files if f not in env_files()]
            _cached = (key, ModelRegistry.load(extra))
        return _cached[1]


def lookup(model_name: str) -> ModelEntry | None:
    """The registry entry of ``model_name``, or None (an existing local folder is no entry)."""
    if Path(model_name).expanduser().exists():
        return None
    return active_registry().get(model_name)
