"""`ResearchAttention`: a masker stack plus exact importance-weighted attention.

``custom_attention`` has the transformers attention-function signature, so an adapter
registers ``research_attention.custom_attention`` (through a small closure) with
``transformers.AttentionInterface`` and every decoder layer calls it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import torch

from sah_core.attention.backends import run_attention
from sah_core.call_plan import CallPlan
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker
from sah_core.maskers.sampling_base import SamplingMaskerConfig
from sah_core.metrics.micro_metric_logger import MicroMetricLogger

logger = logging.getLogger(__name__)

#: The phases of a request, in order; a stack acts in the ones its config names.
PHASES: tuple[str, ...] = ("prefill", "question", "decode")
DEFAULT_PHASES: tuple[str, ...] = ("question", "decode")

_NO_RANGE = contextlib.nullcontext()


def _no_range(name: str) -> contextlib.AbstractContextManager[Any]:
    return _NO_RANGE


def _profiler_range(name: str) -> contextlib.AbstractContextManager[Any]:
    return torch.profiler.record_function(name)


def profiler_ranges() -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    """``torch.profiler.record_function`` while a torch profiler runs, else a no-op.

    ``custom_attention`` labels its parts with these ranges (``sah.call[layer=i]``,
    ``sah.plan``, ``sah.masker[j]:<tag>``, ``sah.attention`` holding a zero-length
    ``sah.backend:<name>`` marker, ``sah.metrics``); without a profiler they cost one check
    per layer call.
    """
    return _profiler_range if torch._C._autograd._profiler_enabled() else _no_range


@dataclasses.dataclass
class ResearchAttentionConfig:
    """An ordered masker stack. Each masker adds keys to the mask built by the ones before.

    No maskers = dense attention. A stack whose final mask selects nothing attends nothing
    (output 0, logged once); it never falls back to dense. At most one sampling masker
    (its weights are keep-probabilities). ``to_dict`` / ``from_dict`` round-trip through
    JSON with ``"type"`` tags.

    ``phases`` names the phases the stack acts in: ``"prefill"`` (the context), ``"question"``
    and ``"decode"``; the phases it leaves out run dense. Default ``("question", "decode")``.
    """

    masker_configs: list[MaskerConfig] = dataclasses.field(default_factory=list)
    phases: tuple[str, ...] = DEFAULT_PHASES

    def __post_init__(self) -> None:
        if not isinstance(self.masker_configs, (list, tuple)):
            raise ValueError(
                f"ResearchAttentionConfig.masker_configs={self.masker_configs!r} is not "
                "allowed: use a list of masker configs"
            )
        self.masker_configs = list(self.masker_configs)
        if isinstance(self.phases, str) or not isinstance(self.phases, (list, tuple)):
            raise ValueError(
                f"ResearchAttentionConfig.phases={self.phases!r} is not allowed: use a tuple of "
                f"phase names from {list(PHASES)}"
            )
        unknown_phases = [p for p in self.phases if p not in PHASES]
        if unknown_phases or not self.phases or len(set(self.phases)) != len(self.phases):
            raise ValueError(
                f"ResearchAttentionConfig.phases={tuple(self.phases)!r} is not allowed: use one "
                f"or more distinct names from {list(PHASES)}"
            )
        self.phases = tuple(p for p in PHASES if p in self.phases)
        for position, config in enumerate(self.masker_configs):
            if not isinstance(config, MaskerConfig):
                raise ValueError(
                    f"ResearchAttentionConfig.masker_configs[{position}]={config!r} is not "
                    "allowed: each entry must be a MaskerConfig instance"
                )
        sampling = [
            type(c).__name__ for c in self.masker_configs if isinstance(c, SamplingMaskerConfig)
        ]
        if len(sampling) > 1:
            raise ValueError(
                f"ResearchAttentionConfig.masker_configs holds {len(sampling)} sampling maskers "
                f"({', '.join(sampling)}), which is not allowed: at most one sampling masker "
                "per stack"
            )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": type(self).__name__,
            "masker_configs": [config.to_dict() for config in self.masker_configs],
        }
        if self.phases != DEFAULT_PHASES:
            data["phases"] = list(self.phases)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResearchAttentionConfig:
        if not isinstance(data, dict):
            raise ValueError(f"data={data!r} is not allowed: expected a dict from to_dict()")
        tag = data.get("type", cls.__name__)
        if tag != cls.__name__:
            raise ValueError(f"data['type']={tag!r} is not allowed: expected {cls.__name__!r}")
        unknown = sorted(set(data) - {"type", "masker_configs", "phases"})
        if unknown:
            raise ValueError(
                f"ResearchAttentionConfig fields {unknown} are not allowed: known fields are "
                "['masker_configs', 'phases']"
            )
        entries = data.get("masker_configs", [])
        if not isinstance(entries, list):
            raise ValueError(
                f"data['masker_configs']={entries!r} is not allowed: expected a list of dicts"
            )
        phases = data.get("phases", DEFAULT_PHASES)
        if not isinstance(phases, (list, tuple)):
            raise ValueError(
                f"data['phases']={phases!r} is not allowed: expected a list of names from "
                f"{list(PHASES)}"
            )
        return cls(
            masker_configs=[MaskerConfig.from_dict(entry) for entry in entries],
            phases=tuple(phases),
        )


class ResearchAttention:
    """Runs the masker stack, then attention under the resulting mask.

    Per layer call it builds one :class:`~sah_core.call_plan.CallPlan` (inputs checked,
    attention mask normalised, chunk plan fixed), hands ``plan.for_masker(i)`` to masker
    ``i`` as ``add_mask(call, previous)``, then runs the backend layer
    (:mod:`sah_core.attention.backends`).

    ``query_chunk_size`` (None = automatic) caps the query rows processed at once by the
    maskers and the attention, so prefill never holds a ``[B, H, Q, K]`` tensor for all Q.
    ``raise_on_nonfinite`` raises :class:`~sah_core.call_plan.NonFiniteInputError` when the
    queries, keys or values hold NaN/inf (one device sync per call); otherwise non-finite
    inputs propagate exactly as in dense attention. ``backend`` forces one attention backend
    (``"auto"``, ``"reference"``, ``"triton"`` or a registered name).
    """

    def __init__(
        self,
        config: ResearchAttentionConfig,
        maskers: list[ResearchMasker] | None = None,
        *,
        query_chunk_size: int | None = None,
        raise_on_nonfinite: bool = False,
        backend: str = "auto",
    ) -> None:
        if not isinstance(config, ResearchAttentionConfig):
            raise ValueError(
                f"config={type(config).__name__} is not allowed: expected a ResearchAttentionConfig"
            )
        config.__post_init__()  # re-check a stack edited after construction
        if query_chunk_size is not None and (
            isinstance(query_chunk_size, bool)
            or not isinstance(query_chunk_size, int)
            or query_chunk_size < 1
        ):
            raise ValueError(
                f"query_chunk_size={query_chunk_size!r} is not allowed: use a positive int or None"
            )
        if not isinstance(raise_on_nonfinite, bool):
            raise ValueError(
                f"raise_on_nonfinite={raise_on_nonfinite!r} is not allowed: use True or False"
            )
        self.config = config
        self.maskers: list[ResearchMasker] = (
            list(maskers)
            if maskers is not None
            else [ResearchMasker.create_from_config(c) for c in config.masker_configs]
        )
        self._tags = [type(m.config).type_tag for m in self.maskers]
        self._masker_ranges = [f"sah.masker[{i}]:{tag}" for i, tag in enumerate(self._tags)]
        self.query_chunk_size = query_chunk_size
        self.raise_on_nonfinite = raise_on_nonfinite
        self.backend = backend
        self._told_empty = False

    @classmethod
    def create_from_config(
        cls,
        config: ResearchAttentionConfig,
        *,
        query_chunk_size: int | None = None,
        raise_on_nonfinite: bool = False,
        backend: str = "auto",
    ) -> ResearchAttention:
        return cls(
            config,
            query_chunk_size=query_chunk_size,
            raise_on_nonfinite=raise_on_nonfinite,
            backend=backend,
        )

    # ------------------------------------------------------------------ plan + mask
    def plan(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        sparse_meta_data: dict[Any, Any] | None = None,
        layer_idx: int | None = None,
        **kwargs: Any,
    ) -> CallPlan:
        """The call plan of one layer call (``kwargs`` as transformers passes them)."""
        s_aux = kwargs.pop("s_aux", None)
        positions = kwargs.pop("query_positions", None)
        chunk = kwargs.pop("query_chunk_size", None)
        return CallPlan.build(
            queries,
            keys,
            values,
            attention_mask,
            scaling,
            layer_idx=layer_idx,
            sparse_meta_data=sparse_meta_data,
            dropout=dropout,
            s_aux=s_aux,
            query_positions=positions,
            query_chunk_size=self.query_chunk_size if chunk is None else chunk,
            extras=kwargs,
            raise_on_nonfinite=self.raise_on_nonfinite,
        )

    def mask_for(self, call: CallPlan) -> Mask:
        """The stack's mask ``[B, Hq, Q, K]``: empty, then each masker's ``add_mask``."""
        mask = Mask.empty(call.shape, call.device, torch.float32)
        span = profiler_ranges()
        last = len(self.maskers) - 1
        for position, masker in enumerate(self.maskers):
            with span(self._masker_ranges[position]):
                plan = call.for_masker(position, self._tags[position], position == last)
                mask = masker.add_mask(plan, mask)
        return mask

    def compute_mask(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        sparse_meta_data: dict[Any, Any] | None,
        layer_idx: int | None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> Mask:
        """The stack's mask for raw inputs (builds the plan; see :meth:`mask_for`)."""
        call = self.plan(
            queries,
            keys,
            values,
            attention_mask,
            scaling,
            dropout,
            sparse_meta_data,
            layer_idx,
            **kwargs,
        )
        return self.mask_for(call)

    # ------------------------------------------------------------------ attention
    def custom_attention(
        self,
        module: Any,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        sparse_meta_data: dict[Any, Any] | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """transformers attention function: returns ``(out [B, Q, Hq, D], None)``.

        ``queries [B, Hq, Q, D]``, ``keys``/``values`` ``[B, Hkv, K, D]``; ``attention_mask``
        additive float ``[B|1, 1, Q|1, K]``, bool (True = attend) or None. ``layer_idx`` is
        ``module.layer_idx`` when a module is given, else ``kwargs["layer_idx"]``.
        ``kwargs["s_aux"]`` (``[Hq]``) adds gpt-oss style sink logits,
        ``kwargs["query_positions"]`` gives each query's key position (default: the last Q
        keys). Other kwargs reach the maskers as ``call.extras``.
        """
        layer_idx = kwargs.pop("layer_idx", None)
        if module is not None and getattr(module, "layer_idx", None) is not None:
            layer_idx = module.layer_idx
        if sparse_meta_data is None:
            sparse_meta_data = {}
        span = profiler_ranges()
        label = "" if span is _no_range else f"sah.call[layer={layer_idx}]"
        with span(label):
            return self._run_call(
                queries,
                keys,
                values,
                attention_mask,
                scaling,
                dropout,
                sparse_meta_data,
                layer_idx,
                span,
                kwargs,
            )

    def _run_call(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
        dropout: float,
        sparse_meta_data: dict[Any, Any],
        layer_idx: int | None,
        span: Callable[[str], contextlib.AbstractContextManager[Any]],
        kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        with span("sah.plan"):
            call = self.plan(
                queries,
                keys,
                values,
                attention_mask,
                scaling,
                dropout,
                sparse_meta_data,
                layer_idx,
                **kwargs,
            )
        if self.maskers:
            mask = self.mask_for(call)
            if mask.representation == "empty" and not self._told_empty and mask.numel():
                self._told_empty = True
                logger.warning(
                    "the masker stack %s selected no key (layer %s): attention over nothing "
                    "gives output 0 (it is never run dense); check the maskers' sizes",
                    self._tags,
                    layer_idx,
                )
        else:
            mask = Mask.full(call.shape, call.device, torch.float32)  # no maskers = dense
        with span("sah.attention"):
            out, backend = run_attention(call, mask, self.backend)
            if span is not _no_range:
                with span(f"sah.backend:{backend}"):
                    pass  # marks which backend ran this attention range
        metrics = MicroMetricLogger.active()
        if metrics is not None and metrics.should_record():
            with span("sah.metrics"):
                metrics.record_attention(
                    layer_idx,
                    call.queries,
                    call.keys,
                    call.values,
                    mask,
                    out,
                    scaling=call.scaling,
                    attention_mask=call.attention_mask,
                    s_aux=call.s_aux,
                    query_chunk_size=call.requested_chunk_rows,
                    backend=backend,
                )
        return out.transpose(1, 2).contiguous(), None
