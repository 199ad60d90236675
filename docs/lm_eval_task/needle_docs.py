"""Documents of the offline example tasks (``custom_dataset`` of their YAML files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCS = Path(__file__).with_name("needle_codes.jsonl")


def load_docs(**_: Any) -> dict[str, Any]:
    import datasets

    rows = [json.loads(line) for line in DOCS.read_text(encoding="utf-8").splitlines() if line]
    return {"test": datasets.Dataset.from_list(rows)}
