"""Reading a local snapshot of a hub dataset repo, offline, with the hub's config/split logic.

A snapshot is the folder ``huggingface-cli download --repo-type dataset --local-dir`` fetches (or
``push_to_hub`` writes): ``README.md`` whose YAML front matter lists ``configs:`` with their
``data_files`` per split, and the parquet shards ``<config>/<split>-00000-of-00001.parquet``.
``datasets.load_dataset(<folder>, <config>, split=...)`` understands that metadata; with
``streaming=True`` it reads the parquet files in place (no Arrow cache is written and nothing is
downloaded, since the path is a local folder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

README = "README.md"


def snapshot_folder(data_dir: str | Path, repo_id: str) -> Path:
    """Where the snapshot of hub repo ``owner/name`` lives under ``data_dir``."""
    owner, sep, name = repo_id.partition("/")
    if not sep or not owner or not name:
        raise ValueError(f"hub id {repo_id!r} is not of the form 'owner/name'")
    return Path(data_dir) / owner / name


def readme_configs(folder: Path) -> list[dict[str, Any]] | None:
    """The ``configs:`` entries of the snapshot's README front matter, or None if it has none."""
    readme = folder / README
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        meta = yaml.safe_load(text[3:end])
    except yaml.YAMLError as exc:
        raise ValueError(f"snapshot {folder}: README.md front matter is not YAML: {exc}") from exc
    configs = meta.get("configs") if isinstance(meta, dict) else None
    if not isinstance(configs, list):
        return None
    return [c for c in configs if isinstance(c, dict)]


def is_snapshot(folder: Path) -> bool:
    """True when ``folder`` looks like a hub repo on disk (README configs or nested parquet)."""
    if not folder.is_dir():
        return False
    if readme_configs(folder) is not None:
        return True
    return any(folder.glob("*/*.parquet"))


def _config_names(configs: list[dict[str, Any]]) -> list[str]:
    return [str(c.get("config_name", "default")) for c in configs]


def snapshot_records(folder: Path, config: str | None, split: str) -> list[dict[str, Any]]:
    """All records of ``config`` / ``split`` of the snapshot at ``folder``, never downloading.

    The config is resolved as the hub would: by the README's ``configs:`` when it has them,
    else by the sub-folder named after the config (``data_dir=<config>``, as kvpress loads
    LongBench), else (no config named) the folder's single default config.
    """
    if not folder.is_dir():
        raise ValueError(f"snapshot folder {str(folder)!r} does not exist")
    configs = readme_configs(folder)
    kwargs: dict[str, Any] = {}
    if configs is not None:
        names = _config_names(configs)
        if config is not None and config not in names:
            raise ValueError(
                f"snapshot {folder}: config {config!r} is not in its README configs; "
                f"available: {names}"
            )
        if config is None and len(names) > 1 and "default" not in names:
            raise ValueError(
                f"snapshot {folder}: several configs {names} and none was named; "
                "pick the subset whose config you want"
            )
        kwargs["name"] = config
    elif config is not None:
        if not (folder / config).is_dir():
            raise ValueError(
                f"snapshot {folder}: no README configs metadata and no sub-folder {config!r}; "
                "expected README.md with `configs:` or <config>/<split>-*.parquet"
            )
        kwargs["data_dir"] = config

    from datasets import load_dataset  # lazy: heavy import

    logger.info("reading snapshot %s config=%s split=%s", folder, config, split)
    try:
        dataset = load_dataset(str(folder), split=split, streaming=True, **kwargs)
        return [dict(r) for r in dataset]
    except (ValueError, TypeError) as exc:  # bad split or metadata: name snapshot and config
        raise ValueError(
            f"snapshot {folder} (config {config!r}, split {split!r}) could not be read: {exc}"
        ) from exc
