"""Loading a model and tokenizer from a built-in name, a local folder or a hub id.

Load failures are typed (:class:`ModelLoadError` and its subclasses, each with the path and
the reason) so a caller such as the benchmark CLI can report them as bad input: a local path
that does not exist, a pickle checkpoint refused by ``safetensors_only``, a safetensors file
whose header or length is broken.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path
from typing import Any

from sah_adapters.builtin_models import BUILTIN_MODELS, converted_model_dir
from sah_adapters.model_registry import lookup
from sah_adapters.placement import DTYPE_NAMES, Placement

logger = logging.getLogger(__name__)

# A hub id: "name" or "owner/name", letters, digits, "-", "_", "." (no "--" / ".." runs).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class ModelLoadError(ValueError):
    """A model could not be loaded from ``path``, for ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load model from {path!r}: {reason}")
        self.path = path
        self.reason = reason


class ModelPathNotFoundError(ModelLoadError):
    """A local model path (not a hub id) that does not exist."""


class UnsafeCheckpointError(ModelLoadError):
    """A pickle checkpoint refused because ``safetensors_only=True``."""


class CorruptCheckpointError(ModelLoadError):
    """A safetensors file whose header or data length is unreadable."""


def looks_like_local_path(name: str) -> bool:
    """Whether ``name`` can only be a filesystem path (not a hub id such as ``org/model``)."""
    return (
        name.startswith(("/", ".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or not _HUB_ID.match(name)
        or "--" in name
        or ".." in name
    )


def resolve_model_source(model_name: str) -> str:
    """The folder or hub id that ``from_pretrained`` should read for ``model_name``: a local
    folder, else a model registry entry (:mod:`sah_adapters.model_registry`), else a built-in
    model, else a hub id."""
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name={model_name!r} must be a non-empty str")
    entry = lookup(model_name)
    if entry is not None:
        if entry.builtin is not None:
            return str(converted_model_dir(entry.builtin))
        model_name = entry.source
    if model_name in BUILTIN_MODELS:
        return str(converted_model_dir(model_name))
    path = Path(model_name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelPathNotFoundError(model_name, "it is a file; give the model's folder")
        return str(path)
    if looks_like_local_path(model_name):
        raise ModelPathNotFoundError(model_name, "no such local folder (and not a hub id)")
    return model_name


def check_safetensors_file(path: Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path`` has a readable header and length.

    The format: an 8-byte little-endian header size N, N bytes of JSON mapping each tensor to
    ``data_offsets`` [begin, end) in the data section that follows; the file must be exactly
    8 + N + the largest end long.
    """
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError(f"{size} bytes, shorter than the 8-byte header size")
            (header_size,) = struct.unpack("<Q", head)
            if 8 + header_size > size:
                raise ValueError(f"header of {header_size} bytes runs past the end ({size})")
            header = json.loads(handle.read(header_size))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        ends = [
            int(entry["data_offsets"][1])
            for name, entry in header.items()
            if name != "__metadata__"
        ]
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as error:
        raise CorruptCheckpointError(str(path), f"unreadable safetensors header: {error}") from None
    expected = 8 + header_size + max(ends, default=0)
    if expected != size:
        raise CorruptCheckpointError(
            str(path), f"truncated or padded safetensors file: {size} bytes, header says {expected}"
        )


def check_local_checkpoint(folder: Path, safetensors_only: bool) -> None:
    """Validate the weights of a local folder before ``from_pretrained`` reads them."""
    safetensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if safetensors_only and pickles and not safetensors:
        raise UnsafeCheckpointError(
            str(folder),
            f"only pickle checkpoints ({', '.join(p.name for p in pickles)}) and "
            "safetensors_only=True; loading a pickle can run arbitrary code",
        )
    for path in safetensors:
        check_safetensors_file(path)


def warn_remote_code(source: str) -> None:
    """Log which code ``trust_remote_code=True`` will run."""
    folder = Path(source)
    if folder.is_dir():
        code = sorted(p.name for p in folder.glob("*.py"))
        auto_map: Any = {}
        config = folder / "config.json"
        if config.is_file():
            try:
                auto_map = json.loads(config.read_text()).get("auto_map", {})
            except (ValueError, OSError):
                auto_map = {}
        logger.warning(
            "trust_remote_code=True: loading %s will run its Python code %s (auto_map: %s)",
            source,
            code or "(no .py files in the folder)",
            auto_map or "none",
        )
    else:
        logger.warning(
            "trust_remote_code=True: loading hub repo %s will download and run the Python "
            "modules named in its config.json auto_map",
            source,
        )


def load_model(
    model_name: str,
    model_kwargs: dict[str, Any],
    placement: Placement | None = None,
    *,
    safetensors_only: bool = False,
) -> Any:
    """A causal LM in eval mode; float32 on the CPU unless ``placement`` says else.

    ``trust_remote_code`` stays off unless ``model_kwargs`` sets it (then a warning names the
    code): remote code is arbitrary code, and its attention would not go through the registry.
    """
    from transformers import AutoModelForCausalLM

    placement = placement or Placement.resolve()
    entry = lookup(model_name)
    model_class: Any = AutoModelForCausalLM
    kwargs = dict(model_kwargs)
    if entry is not None:  # the entry's kwargs; the caller's win
        kwargs = {**entry.model_kwargs, **kwargs}
        model_class = entry.model_class_object()
        quantization = entry.quantization_config()
        if quantization is not None:
            kwargs.setdefault("quantization_config", quantization)
    kwargs.update(placement.from_pretrained_kwargs())
    if entry is not None and entry.dtype is not None and placement.dtype is None:
        kwargs["dtype"] = entry.dtype if entry.dtype == "auto" else DTYPE_NAMES[entry.dtype]
    kwargs.setdefault("trust_remote_code", False)
    source = resolve_model_source(model_name)
    if kwargs["trust_remote_code"]:
        warn_remote_code(source)
    local = Path(source).is_dir()
    if local:
        check_local_checkpoint(Path(source), safetensors_only)
    else:
        logger.info("%s is not a local folder or built-in model; loading it from the hub", source)
    if safetensors_only:
        kwargs["use_safetensors"] = True
    try:
        model: Any = model_class.from_pretrained(source, **kwargs)
    except OSError as error:
        if safetensors_only and "safetensors" in str(error).lower():
            raise UnsafeCheckpointError(
                source, f"no safetensors weights and safetensors_only=True ({error})"
            ) from error
        raise
    except Exception as error:
        if type(error).__name__ == "SafetensorError":
            reason = f"safetensors could not read it: {error}"
            raise CorruptCheckpointError(source, reason) from error
        raise
    placement.move(model)
    model.eval()
    return model


def load_tokenizer(model_name: str, tokenizer_kwargs: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    entry = lookup(model_name)
    kwargs = dict(tokenizer_kwargs)
    if entry is not None:
        kwargs = {**entry.tokenizer_kwargs, **kwargs}
    kwargs.setdefault("trust_remote_code", False)
    source = resolve_model_source(model_name)
    if kwargs["trust_remote_code"]:
        warn_remote_code(source)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if entry is not None and entry.chat_template is not None:
        tokenizer.chat_template = entry.chat_template
    elif entry is not None and entry.use_chat_template is False:
        tokenizer.chat_template = None  # plain-text prompts for this entry
    return tokenizer
