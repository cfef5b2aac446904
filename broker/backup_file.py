"""The ``chorus backup`` file: JSON Lines, a manifest first and an end line last.

See broker.backup for what the records hold. The end line carries the counts, so a file
cut short (a full disk, a killed process) is refused instead of half-restored.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson

__all__ = ["FORMAT", "VERSION", "BackupError", "open_backup", "read_lines", "write_record"]

FORMAT, VERSION = "chorus-backup", 1


class BackupError(RuntimeError):
    """The backup file or Redis failed; the message says where."""


@contextmanager
def open_backup(path: str, mode: str, *, gzipped: bool | None = None) -> Iterator[IO[str]]:
    """A text stream on ``path`` ("-" = stdin/stdout); ``mode`` "r" or "w"; gzip when
    ``gzipped`` (default: the name ends in ``.gz``).

    Error handling: BackupError naming the file if it cannot be opened."""
    if path == "-":
        yield sys.stdout if mode == "w" else sys.stdin
        return
    opener: Any = gzip.open if (path.endswith(".gz") if gzipped is None else gzipped) \
        else open
    try:
        stream = opener(path, mode + "t", encoding="utf-8")
    except OSError as exc:
        raise BackupError(f"{path}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def write_record(out: IO[str], record: dict[str, Any]) -> None:
    """One record as one line."""
    out.write(orjson.dumps(record).decode() + "\n")


def read_lines(stream: IO[str]) -> list[dict[str, Any]]:
    """Every record of a backup, checked whole before anything is written.

    Error handling: BackupError naming the line for malformed JSON, a first line that
    is not this format's manifest, another version, or a missing/miscounted end line.
    """
    records = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BackupError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(record, dict) or "kind" not in record:
            raise BackupError(f"line {number}: not a backup record")
        records.append(record)
    if not records or records[0].get("kind") != "manifest" or \
            records[0].get("format") != FORMAT:
        raise BackupError(f"not a {FORMAT} file (no manifest on its first line)")
    if records[0].get("version") != VERSION:
        raise BackupError(f"backup version {records[0].get('version')!r}; this Chorus "
                          f"reads version {VERSION}")
    end = records[-1]
    body = records[1:-1]
    counts = {kind: sum(1 for r in body if r["kind"] == kind) for kind in ("channel", "inbox")}
    if end.get("kind") != "end" or end.get("channels") != counts["channel"] or \
            end.get("inboxes") != counts["inbox"]:
        raise BackupError("the backup is incomplete (no end line, or its counts differ "
                          "from the records): it was cut short")
    return records
