"""Crash-safe file writes for result cells.

Every file is written to a temporary sibling, flushed to disk and renamed over its final name
(``os.replace`` is atomic on POSIX), so a reader never sees half a file. A cell is complete only
once its marker is written, and the marker is written last.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Written last; a cell without it is partial and is redone (from its progress log).
COMPLETE_MARKER = ".complete"
PROGRESS_LOG = "progress.jsonl"
ERROR_FILE = "error.json"


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then move ``tmp_path`` over ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def is_complete(cell_dir: Path, fingerprint: str) -> bool:
    """True when the cell's marker exists and was written for this exact cell spec."""
    marker = cell_dir / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        return bool(read_json(marker).get("fingerprint") == fingerprint)
    except (OSError, ValueError, AttributeError):
        return False


def read_progress(cell_dir: Path, fingerprint: str) -> list[dict[str, Any]]:
    """Entries of the progress log that belong to this cell spec, one per answered request.

    A run killed while appending leaves a torn last line; it is dropped, and the log is
    rewritten without it so the next append starts on a clean line. Entries of another spec
    (the cell was re-configured) are dropped too; a request logged twice is kept once.
    """
    path = cell_dir / PROGRESS_LOG
    if not path.is_file():
        return []
    entries: dict[str, dict[str, Any]] = {}
    dirty = False
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                entry = json.loads(line) if line.endswith("\n") else None
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
                dirty = True
                continue
            if entry["request_id"] in entries:
                dirty = True
            entries.setdefault(entry["request_id"], entry)
    kept = list(entries.values())
    if dirty:
        atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in kept))
    return kept


def append_progress(cell_dir: Path, entry: dict[str, Any]) -> None:
    """Append one request's entry as a single line and force it to disk."""
    data = (json.dumps(entry, default=str) + "\n").encode("utf-8")
    fd = os.open(cell_dir / PROGRESS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(directory: Path) -> None:
    """Raise ValueError when ``directory`` cannot be created or written to."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(
            f"output dir {str(directory)!r} is not writable ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None
