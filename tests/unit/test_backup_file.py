"""The backup file and the ``chorus backup`` / ``chorus restore`` commands' refusals:
a file that is not a backup, of another version or cut short is refused before anything
is written; the memory engine has nothing to back up; a failed backup leaves no file.
(Backups of real data: tests/functional/test_backup_restore.py and
tests/contract/test_backup_topologies.py.)"""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from broker.backup import BackupError, read_lines
from broker.cli import main

MANIFEST = {"kind": "manifest", "format": "chorus-backup", "version": 1, "prefix": "chorus"}
CHANNEL = {"kind": "channel", "channel": "a", "epoch": "e", "top": 1, "meta_expire_at": None,
           "stream_expire_at": None, "publications": [[1, "eA=="]]}
END = {"kind": "end", "channels": 1, "inboxes": 0, "publications": 1, "notifications": 0}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("CHORUS_", "CENTRIFUGO_")):
            monkeypatch.delenv(name)


def text(*records: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def test_a_complete_file_reads() -> None:
    records = read_lines(io.StringIO(text(MANIFEST, CHANNEL, END)))
    assert [r["kind"] for r in records] == ["manifest", "channel", "end"]


@pytest.mark.parametrize(("lines", "message"), [
    ((), "no manifest"),
    (({"kind": "channel"}, END), "no manifest"),
    (({**MANIFEST, "format": "other"}, END), "no manifest"),
    (({**MANIFEST, "version": 2}, CHANNEL, END), "backup version 2"),
    ((MANIFEST, CHANNEL), "cut short"),
    ((MANIFEST, END), "cut short"),  # the end line counts one channel; there is none
    ((MANIFEST, "{not json", END), "line 2: not JSON"),
    ((MANIFEST, "[1, 2]", END), "line 2: not a backup record"),
], ids=["empty", "no-manifest", "other-format", "other-version", "no-end", "miscounted",
        "bad-json", "not-a-record"])
def test_a_bad_file_is_refused_whole(lines: tuple[Any, ...], message: str) -> None:
    with pytest.raises(BackupError, match=message):
        read_lines(io.StringIO(text(*lines)))


def write_config(tmp_path: Path, engine: dict[str, Any]) -> Path:
    path = tmp_path / "chorus.json"
    path.write_text(json.dumps({"client": {"insecure": True}, "engine": engine}))
    return path


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def test_the_memory_engine_has_nothing_to_back_up(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, {"type": "memory"})
    assert main(["backup", "-c", str(config), "-o", str(tmp_path / "b.jsonl")]) == 2
    assert "engine.type is not redis" in capsys.readouterr().err
    assert not (tmp_path / "b.jsonl").exists()


def test_a_failed_backup_leaves_no_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    redis = {"address": [f"127.0.0.1:{unused_port()}"], "connect_timeout": "200ms"}
    config = write_config(tmp_path, {"type": "redis", "redis": redis})
    assert main(["backup", "-c", str(config), "-o", str(tmp_path / "b.jsonl.gz")]) == 1
    assert "backup failed: redis:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [config]  # neither the file nor its temporary


def test_restore_refuses_a_cut_file_and_a_dry_run_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on the configured Redis: the refusal and the dry run never connect.
    redis = {"address": [f"127.0.0.1:{unused_port()}"], "prefix": "other"}
    config = write_config(tmp_path, {"type": "redis", "redis": redis})
    cut = tmp_path / "cut.jsonl"
    cut.write_text(text(MANIFEST, CHANNEL))
    assert main(["restore", "-c", str(config), str(cut)]) == 1
    assert "cut short" in capsys.readouterr().err
    whole = tmp_path / "whole.jsonl.gz"
    with gzip.open(whole, "wt") as out:
        out.write(text(MANIFEST, CHANNEL, END))
    assert main(["restore", "-c", str(config), "--dry-run", str(whole)]) == 0
    err = capsys.readouterr().err
    assert "dry run, nothing written): 1 channels (1 publications)" in err
    assert "taken under prefix 'chorus'; restoring under 'other'" in err
