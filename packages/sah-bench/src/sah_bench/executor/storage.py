"""Crash-safe file writes for result cells.

Every file is written to a temporary sibling, flushed to disk and renamed over its final name
(``os.replace`` is atomic on POSIX), so a reader never sees half a file. Files get the mode the
process umask allows (``mkstemp`` alone would leave them 0600). A cell is complete only once its
marker is written, last; the marker holds the size and SHA-256 of every result file, so a
truncated or edited file makes the cell incomplete again instead of being trusted.
"""

from __future__ import annotations

import hashlib
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
#: The files a complete cell holds; the marker records a checksum of each.
RESULT_FILES = ("raw_results.parquet", "raw_results.csv", "micro_metrics.jsonl", "metrics.json")


def _file_mode() -> int:
    """0666 minus the umask: what ``open()`` would give a new file."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


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
        os.chmod(tmp, _file_mode())
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


def file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file (what the completion marker stores for it)."""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def write_complete_marker(cell_dir: Path, fingerprint: str) -> None:
    """The last write of a cell: its fingerprint and a checksum of each result file."""
    files = {name: file_digest(cell_dir / name) for name in RESULT_FILES}
    atomic_write_json(cell_dir / COMPLETE_MARKER, {"fingerprint": fingerprint, "files": files})


def verify_cell(cell_dir: Path, fingerprint: str | None = None) -> str | None:
    """Why the cell in ``cell_dir`` is not complete (None when it is).

    Complete = the marker parses, matches ``fingerprint`` (when given), and every result file
    exists with the size and checksum the marker recorded.
    """
    marker = cell_dir / COMPLETE_MARKER
    if not marker.is_file():
        return "no completion marker"
    try:
        data = read_json(marker)
    except (OSError, ValueError) as exc:
        return f"completion marker is unreadable ({exc})"
    if not isinstance(data, dict):
        return "completion marker is not a JSON object"
    if fingerprint is not None and data.get("fingerprint") != fingerprint:
        return "completion marker belongs to other settings"
    files = data.get("files")
    if not isinstance(files, dict):
        return _parse_check(cell_dir)  # a marker of an older version: no checksums to compare
    for name in RESULT_FILES:
        path = cell_dir / name
        if not path.is_file():
            return f"{name} is missing"
        expected = files.get(name)
        if not isinstance(expected, dict):
            return f"{name} has no checksum in the marker"
        if path.stat().st_size != expected.get("bytes"):
            return f"{name} has {path.stat().st_size} bytes, {expected.get('bytes')} were written"
        if file_digest(path)["sha256"] != expected.get("sha256"):
            return f"{name} differs from what was written (checksum mismatch)"
    return None


def _parse_check(cell_dir: Path) -> str | None:
    """Whether every result file exists and parses (for markers without checksums)."""
    for name in RESULT_FILES:
        if not (cell_dir / name).is_file():
            return f"{name} is missing"
    try:
        import pyarrow.parquet as pq

        pq.read_metadata(cell_dir / "raw_results.parquet")
    except Exception as exc:  # pyarrow raises several types for a damaged file
        return f"raw_results.parquet does not parse ({exc})"
    try:
        metrics = read_json(cell_dir / "metrics.json")
    except (OSError, ValueError) as exc:
        return f"metrics.json does not parse ({exc})"
    if not isinstance(metrics, dict) or "model" not in metrics:
        return "metrics.json holds no cell metrics"
    return None


def is_complete(cell_dir: Path, fingerprint: str) -> bool:
    """True when the cell was completed for this exact spec and its files are intact."""
    return verify_cell(cell_dir, fingerprint) is None


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
