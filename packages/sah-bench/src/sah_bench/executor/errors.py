"""The four kinds of cell failure, recorded in ``error.json`` and ``run_summary.json``.

* ``config`` — a sparse config, option or setting is not allowed (fix the run file);
* ``model_load`` — the model or tokenizer could not be loaded (path, hub id, weights);
* ``data`` — the benchmark's rows could not be loaded (dataset id, snapshot folder, schema);
* ``run`` — anything that failed while answering requests (the model, the adapter, a scorer).

The first three are bad input: the CLI exits 2 for them, 1 for run errors.
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = ("config", "model_load", "data", "run")
BAD_INPUT_CATEGORIES = frozenset({"config", "model_load", "data"})


class CellError(ValueError):
    """A failure of a known category; ``category`` is one of :data:`CATEGORIES`."""

    category = "run"


class ConfigError(CellError):
    """A sparse config or option the cell cannot run with."""

    category = "config"


class ModelLoadError(CellError):
    """The adapter factory could not build an adapter for a model."""

    category = "model_load"


class DataError(CellError):
    """The benchmark could not provide its rows."""

    category = "data"


def category_of(exc: BaseException, stage: str) -> str:
    """The category of ``exc`` raised during ``stage`` (``"adapter"``, ``"data"``, ``"run"``).

    A :class:`CellError` says its own; otherwise the stage decides (an adapter factory that
    raised a plain error failed to load the model).
    """
    if isinstance(exc, CellError) and type(exc) is not CellError:
        return exc.category
    return {"adapter": "model_load", "data": "data"}.get(stage, "run")
