"""A custom masker from a downstream package, found through the masker registry.

``custom_masker_package/`` is a complete tiny package: ``StridedMaskerConfig`` +
``StridedMasker`` in ``src/sah_example_masker/strided.py`` and, in its ``pyproject.toml``, the
entry-point line a downstream package uses to plug a masker in::

    [project.entry-points."sah.maskers"]
    strided = "sah_example_masker.strided:StridedMasker"

Installed (``pip install -e tutorials/py_examples/custom_masker_package``), the masker is
discovered automatically. This script does not install anything: it imports the package from
its source folder and registers the masker at run time with ``register_masker`` -- the same
registry the entry points feed. After that, the masker is used exactly like a built-in one:
by its config in a ``ResearchAttentionConfig``, also when the stack comes from JSON.

Run: ``uv run python tutorials/py_examples/04_custom_masker_plugin.py``
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import tomllib
from pathlib import Path

import torch

from sparse_attention_hub import (
    ResearchAttention,
    ResearchAttentionConfig,
    available_maskers,
    register_masker,
)

PACKAGE_DIR = Path(__file__).resolve().parent / "custom_masker_package"
PACKAGE_SOURCE = PACKAGE_DIR / "src"


def declared_maskers() -> dict[str, type]:
    """The ``sah.maskers`` entry points the package's pyproject declares, resolved the way
    ``importlib.metadata`` resolves an installed one (``module:attribute``)."""
    pyproject = tomllib.loads((PACKAGE_DIR / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["sah.maskers"]
    resolved = {}
    for name, target in declared.items():
        module_name, _, attribute = target.partition(":")
        resolved[name] = getattr(importlib.import_module(module_name), attribute)
    return resolved


def main() -> None:
    sys.path.insert(0, str(PACKAGE_SOURCE))  # stands in for `pip install` in this tutorial
    from sah_example_masker import StridedMasker, StridedMaskerConfig

    entry_points = declared_maskers()
    print(f"entry points declared in custom_masker_package/pyproject.toml: {entry_points}")
    assert entry_points == {"strided": StridedMasker}

    before = sorted(available_maskers())
    register_masker(StridedMasker)  # what installing the package does through the entry point
    after = sorted(available_maskers())
    print(f"built-in maskers: {len(before)}; after register_masker: {len(after)}")
    print(f"newly registered: {sorted(set(after) - set(before))}")

    # A stack written as JSON (as a benchmark config file would hold it): the registry maps
    # the "type" tag to the plug-in's config class.
    stack_json = """
    {"type": "ResearchAttentionConfig",
     "masker_configs": [{"type": "SinkMaskerConfig", "sink_size": 4},
                        {"type": "StridedMaskerConfig", "stride": 16}]}
    """
    config = ResearchAttentionConfig.from_dict(json.loads(stack_json))
    assert isinstance(config.masker_configs[1], StridedMaskerConfig)
    attention = ResearchAttention(config)
    print(f"maskers built from JSON: {[type(m).__name__ for m in attention.maskers]}")

    # Check the pattern on a small prefill: query at position p attends sinks 0..3 plus
    # p, p - 16, p - 32, ... (the causal part is left to the model's attention mask).
    torch.manual_seed(0)
    queries = torch.randn(1, 2, 64, 16)
    keys = torch.randn(1, 2, 64, 16)
    values = torch.randn(1, 2, 64, 16)
    mask = attention.compute_mask(
        queries, keys, values, None, 1.0 / math.sqrt(16), sparse_meta_data={}, layer_idx=0
    )
    row = mask.get_dense_mask()[0, 0, 63]
    print(f"keys attended by the last query: {row.nonzero().flatten().tolist()}")
    expected = sorted({0, 1, 2, 3} | set(range(63, -1, -16)))
    assert row.nonzero().flatten().tolist() == expected
    print(f"density of the 64x64 mask: {mask.get_density():.3f}")

    # Bad values fail at construction, naming the field, the value and what is allowed.
    try:
        StridedMaskerConfig(stride=0)
    except ValueError as error:
        print(f"StridedMaskerConfig(stride=0) -> ValueError: {error}")


if __name__ == "__main__":
    main()
