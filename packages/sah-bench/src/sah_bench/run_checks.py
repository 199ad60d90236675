"""Checks of a run's devices, dtype and adapter kwargs, done once before any model loads.

Each raises ``ValueError`` naming the setting, the value and what is allowed; the CLI turns that
into one ``error:`` line and exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sah_bench.executor.executor import check_device
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY

DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32", "auto")


def _cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve_devices(devices: Sequence[Any]) -> list[str]:
    """Canonical devices (``auto`` -> ``cuda`` when a GPU is there, else ``cpu``); a CUDA
    device this machine does not have -> ValueError at once."""
    if isinstance(devices, str | int) or not devices:
        raise ValueError(
            f"devices={devices!r} must be a non-empty list: 'cpu', 'cuda', 'cuda:N', 'auto' or "
            "GPU indices N"
        )
    wanted = [str(d).strip().lower() if isinstance(d, str) else d for d in devices]
    needs_cuda = [d for d in wanted if d != "cpu"]
    count = _cuda_count() if needs_cuda else 0
    out = []
    for device in wanted:
        if device == "auto":
            out.append("cuda" if count else "cpu")
            continue
        canonical = check_device(device)
        if canonical != "cpu":
            if count == 0:
                raise ValueError(
                    f"device {device!r} needs a CUDA GPU, but this machine has none "
                    "(torch.cuda.is_available() is False); use --device cpu or --device auto"
                )
            index = canonical.partition(":")[2]
            if index and int(index) >= count:
                raise ValueError(
                    f"device {device!r} does not exist: this machine has {count} CUDA GPU(s) "
                    f"(cuda:0 .. cuda:{count - 1})"
                )
        out.append(canonical)
    return out


def model_kwargs_with_dtype(model_kwargs: dict[str, Any], dtype: str | None) -> dict[str, Any]:
    """``model_kwargs`` with ``dtype`` set (a ``--dtype`` flag wins over the run file)."""
    kwargs = dict(model_kwargs)
    if "torch_dtype" in kwargs:
        kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
    if dtype is not None:
        kwargs["dtype"] = dtype
    value = kwargs.get("dtype")
    if value is not None and value not in DTYPES:
        raise ValueError(f"dtype {value!r} is not allowed; use one of {list(DTYPES)}")
    return kwargs


def check_adapter_kwargs(
    factory: str, generation_kwargs: dict[str, Any], request_kwargs: dict[str, Any]
) -> None:
    """With the default (HF) adapter, check generation and request kwargs as
    ``ModelAdapterHF.process_request`` will, so a bad one fails before the first model load.
    Other factories define their own kwargs and check them themselves."""
    if factory != DEFAULT_ADAPTER_FACTORY:
        return
    from sah_adapters.generation_settings import GenerationSettings, RequestSettings

    GenerationSettings.from_kwargs(generation_kwargs)
    RequestSettings.from_kwargs(request_kwargs)
