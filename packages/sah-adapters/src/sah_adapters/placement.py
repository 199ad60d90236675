"""Where a model's weights go and in which dtype: ``device`` / ``dtype`` options, checked early.

Checked before any weight is read, so ``device="cuda"`` on a machine without CUDA fails at
once, not after minutes of loading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

#: Allowed ``dtype`` names ("auto" = the checkpoint's own dtype).
DTYPE_NAMES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
DEVICE_FORMS = ("cpu", "cuda", "cuda:<index>", "auto")
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``auto`` (cuda:0 when CUDA is there, else cpu)."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(
            f"device={device!r} must be a str or torch.device, one of {list(DEVICE_FORMS)}"
        )
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or _CUDA_INDEX.match(name):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available on this machine "
                f"(torch {torch.__version__}, built for CUDA: {torch.version.cuda}); "
                "use device='cpu' or 'auto'"
            )
        index = 0 if name == "cuda" else int(name.split(":")[1])
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"device={device!r} but this machine has {count} CUDA device(s)")
        return torch.device(f"cuda:{index}")
    raise ValueError(f"device={device!r} is not allowed; use one of {list(DEVICE_FORMS)}")


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """A torch dtype, ``"auto"``, or None (unset)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if isinstance(dtype, torch.dtype) and dtype not in DTYPE_NAMES.values():
            raise ValueError(f"dtype={dtype} is not a float dtype; allowed: {_dtype_choices()}")
        return dtype
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")
        if name == "auto":
            return "auto"
        if name in DTYPE_NAMES:
            return DTYPE_NAMES[name]
    raise ValueError(f"dtype={dtype!r} is not allowed; use one of {_dtype_choices()}")


def _dtype_choices() -> list[str]:
    return ["bfloat16", "float16", "float32", "auto"]


@dataclass(frozen=True)
class Placement:
    """The resolved device and dtype of a model load (None = not asked for)."""

    device: torch.device | None = None
    dtype: torch.dtype | str | None = None
    device_map: Any = None  # a user's own ``device_map`` (e.g. "auto" to shard), passed through

    @classmethod
    def resolve(
        cls,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Placement:
        """Merge the ``device``/``dtype`` arguments with the same keys in ``model_kwargs``.

        ``model_kwargs`` may carry ``device``, ``device_map``, ``dtype`` or ``torch_dtype``;
        these keys are removed from it. Giving one thing twice is an error.
        """
        kwargs = model_kwargs if model_kwargs is not None else {}
        if "device" in kwargs:
            if device is not None:
                raise ValueError("device given both as an argument and in model_kwargs")
            device = kwargs.pop("device")
        device_map = kwargs.pop("device_map", None)
        if device_map is not None and device is not None:
            raise ValueError(
                f"give either device={device!r} or model_kwargs['device_map']={device_map!r}"
            )
        for key in ("dtype", "torch_dtype"):  # torch_dtype: the 4.x spelling
            if key in kwargs:
                if dtype is not None:
                    raise ValueError(f"dtype given twice (argument and model_kwargs[{key!r}])")
                dtype = kwargs.pop(key)
        return cls(resolve_device(device), resolve_dtype(dtype), device_map)

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """``dtype`` (default float32) and ``device_map`` for ``from_pretrained``."""
        kwargs: dict[str, Any] = {"dtype": self.dtype if self.dtype is not None else torch.float32}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        elif self.device is not None and self.device.type != "cpu":
            kwargs["device_map"] = str(self.device)  # weights land there directly
        return kwargs

    def move(self, model: Any) -> None:
        """Put an already loaded model on ``device`` (a no-op when it is there)."""
        if self.device is not None and self.device_map is None:
            first = next(model.parameters(), None)
            if first is None or first.device != self.device:
                model.to(self.device)
