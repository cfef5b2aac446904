"""``chorus backup`` / ``chorus restore``: what Chorus keeps in Redis, as JSON Lines.

What is kept (key layout in broker.engine.redis_codec and broker.engine.notify_redis):
every channel's history stream and meta (epoch, top offset) — the saved hot-channel
list is one of them (``__chorus.cache.hot``) — and every user's notification inbox
(stream and read set). Presence is not: it describes connections of the moment and
rebuilds itself as clients reconnect. Idempotency results (minutes of life, carrying
the old epoch) are not either.

The file: one JSON object per line. A ``manifest`` first (format, version, prefix,
topology, Redis time), then one ``channel`` line per channel and one ``inbox`` line per
user, then an ``end`` line with the counts — restore refuses a file without it (a cut
backup). Bytes are base64; expiries are absolute (Redis time, ms), so a restore keeps
what would still be alive and drops what would have expired. ``.gz`` names are gzip.

Consistency: a *logical* dump per key group, not a point-in-time image. Each channel
is read by one Lua script (meta and stream share the ``{channel}`` hash tag, so this
works on a Cluster too): its epoch, top and publications are one atomic view — the
restored top is never below a restored publication, and no publication is missing
below the top except those the stream had already trimmed. Each inbox likewise
(stream and read set). Channels are read one after another, so two channels are
captured at different moments; that is safe because recovery positions are per
channel: what a channel gained after its own read is simply not in the backup.

Restore: into an empty Redis (or one where a channel has no publications yet). A
restored channel gets a *new* epoch, and its meta keeps the backup's epoch and top as
its *prior* (``pe``, ``pt``). The HISTORY script treats a client position in the prior
epoch at or below the prior top as a position in the new epoch (the publications up to
there are exactly the backup's), so such a client recovers with ``recovered: true``. A
position past the prior top names publications made after the backup, which are lost:
it gets ``recovered: false`` — never a silent gap, and never the new publications that
reuse those offsets. (The backup saves a channel's current epoch only: after a second
restore, positions from before the first one get ``recovered: false``.) A channel that
already holds publications, and an inbox that exists, are left alone (counted as
skipped). Entries are staged under ``<prefix>.restore.{channel}`` and made visible by
one script together with the meta.

Topologies: standalone, client-side sharding (every server is scanned; a restore
places channels by the *current* config, so it can move data between shapes),
Sentinel (the primary) and Cluster (every primary is scanned; scripts route by slot).

Error handling: BackupError for a bad file (not a backup, another version, cut short,
malformed line) and for Redis failures, naming the line or the key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from redis.exceptions import RedisError

from broker.backup_file import (
    FORMAT,
    VERSION,
    BackupError,
    open_backup,
    read_lines,
    write_record,
)
from broker.backup_scripts import (
    COMMIT_CHANNEL,
    READ_CHANNEL,
    READ_INBOX,
    RESTORE_INBOX,
    STAGE,
)
from broker.engine.notify_redis import RedisNotificationStore
from broker.engine.redis_codec import KeyScheme
from broker.engine.redis_link import Cluster, Sharded, Topology, topology_from_config
from broker.engine.state import new_epoch

if TYPE_CHECKING:
    from broker.config import Config

__all__ = ["FORMAT", "VERSION", "BackupError", "Summary", "backup", "backup_to", "open_backup",
           "read_lines", "restore", "restore_from"]

CHUNK = 500  # publications per staging call


@dataclass
class Summary:
    """What a backup wrote or a restore did."""

    channels: int = 0
    publications: int = 0
    inboxes: int = 0
    notifications: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def describe(self) -> str:
        text = (f"{self.channels} channels ({self.publications} publications), "
                f"{self.inboxes} inboxes ({self.notifications} notifications)")
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{n} {why}" for why, n in
                                              sorted(self.skipped.items()))
        return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _expire_at(now_ms: int, pttl: int) -> int | None:
    """Absolute expiry (ms) from a PTTL: None for a key without one."""
    return now_ms + pttl if pttl >= 0 else None


def _ttl_left(expire_at: int | None, now_ms: int) -> int | None:
    """Milliseconds left; 0 for no expiry; None when already past (do not restore)."""
    if expire_at is None:
        return 0
    left = expire_at - now_ms
    return left if left > 0 else None


def backup_to(config: Config, path: str) -> Summary:
    """Run ``backup`` into ``path`` ("-" = stdout). A file is written under a temporary
    name in the same directory and renamed when complete: a failed backup leaves no
    file that looks like one. Error handling: BackupError."""
    if path == "-":
        with open_backup(path, "w") as out:
            return asyncio.run(backup(config, out))
    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise BackupError(f"{path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        with open_backup(temp, "w", gzipped=path.endswith(".gz")) as out:
            summary = asyncio.run(backup(config, out))
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return summary


def restore_from(config: Config, path: str, *,
                 dry_run: bool = False) -> tuple[Summary, list[str]]:
    """Check the whole of ``path`` ("-" = stdin), then ``restore`` it (unless
    ``dry_run``: then the summary counts what the file holds). Returns the summary and
    notes for the operator. Error handling: BackupError."""
    with open_backup(path, "r") as stream:
        records = read_lines(stream)
    notes = []
    prefix = records[0].get("prefix")
    if prefix != config.engine.redis.prefix:
        notes.append(f"the backup was taken under prefix {prefix!r}; restoring under "
                     f"{config.engine.redis.prefix!r}")
    if not dry_run:
        return asyncio.run(restore(config, records)), notes
    end = records[-1]
    return Summary(end["channels"], int(end.get("publications", 0)), end["inboxes"],
                   int(end.get("notifications", 0))), notes


# -- backup ---------------------------------------------------------------------------------

def _scan_clients(topology: Topology) -> list[Any]:
    """One client per place keys live: every shard; the Cluster client scans every
    primary itself; a standalone or Sentinel primary."""
    if isinstance(topology, Sharded):
        return [shard.client("") for shard in topology.shards]
    return [topology.client("")]


def _glob(text: str) -> str:
    """``text`` with Redis glob specials escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def _keys(client: Any, pattern: str, kind: str) -> AsyncIterator[bytes]:
    async for key in client.scan_iter(match=pattern, count=1000, _type=kind):
        yield key


def _tagged(key: bytes, head: str) -> str | None:
    """The hash-tagged name inside ``<head>{NAME}``; None for a foreign key."""
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return None
    if text.startswith(head) and text.endswith("}"):
        return text[len(head):-1]
    return None


async def _channel_record(client: Any, keys: KeyScheme, channel: str) -> dict[str, Any] | None:
    now, (epoch, top), meta_ttl, stream_ttl, entries = await READ_CHANNEL(
        client, [keys.meta(channel), keys.stream(channel)], [])
    if epoch is None:  # the meta expired between the scan and the read
        return None
    pubs = [[int(raw_id.split(b"-", 1)[0]), _b64(fields[1])] for raw_id, fields in entries]
    return {"kind": "channel", "channel": channel, "epoch": epoch.decode(),
            "top": int(top or 0), "meta_expire_at": _expire_at(now, meta_ttl),
            "stream_expire_at": _expire_at(now, stream_ttl) if stream_ttl != -2 else None,
            "publications": pubs}


async def _inbox_record(client: Any, stream_key: str, read_key: str,
                        user: str) -> dict[str, Any]:
    now, stream_ttl, read_ttl, read, entries = await READ_INBOX(
        client, [stream_key, read_key], [])
    notes = [[raw_id.decode(), [_b64(f) for f in fields]] for raw_id, fields in entries]
    return {"kind": "inbox", "user": user, "stream_expire_at": _expire_at(now, stream_ttl),
            "read_expire_at": _expire_at(now, read_ttl),
            "read": sorted(r.decode() for r in read), "notifications": notes}


async def backup(config: Config, out: IO[str]) -> Summary:
    """Write every channel and inbox under ``engine.redis.prefix`` to ``out``.

    Error handling: BackupError for Redis failures; ``out`` then holds no end line,
    so the partial file is refused by restore.
    """
    prefix = config.engine.redis.prefix
    keys, summary = KeyScheme(prefix), Summary()
    topology = topology_from_config(config)
    store = RedisNotificationStore(topology.client, prefix=prefix)
    try:
        if isinstance(topology, Cluster):
            await topology.initialize()
        write_record(out, {"kind": "manifest", "format": FORMAT, "version": VERSION,
                     "prefix": prefix, "topology": topology.kind,
                     "created": int(time.time() * 1000)})
        for client in _scan_clients(topology):
            await _backup_channels(client, keys, out, summary)
            await _backup_inboxes(client, store, out, summary)
        write_record(out, {"kind": "end", "channels": summary.channels, "inboxes": summary.inboxes,
                     "publications": summary.publications,
                     "notifications": summary.notifications})
    except (RedisError, OSError, TimeoutError) as exc:
        raise BackupError(f"redis: {type(exc).__name__}: {exc}") from None
    finally:
        await topology.close()
    return summary


async def _backup_channels(client: Any, keys: KeyScheme, out: IO[str],
                           summary: Summary) -> None:
    head = f"{keys.prefix}.meta.{{"
    seen: set[str] = set()
    async for key in _keys(client, _glob(head) + "*}", "hash"):
        channel = _tagged(key, head)
        if channel is None or channel in seen:  # SCAN may repeat a key
            continue
        seen.add(channel)
        record = await _channel_record(client, keys, channel)
        if record is None:
            summary.skip("channels expired while read")
            continue
        write_record(out, record)
        summary.channels += 1
        summary.publications += len(record["publications"])


async def _backup_inboxes(client: Any, store: RedisNotificationStore, out: IO[str],
                          summary: Summary) -> None:
    head = f"{store.prefix}:notify:{{"
    seen: set[str] = set()
    async for key in _keys(client, _glob(head) + "*}", "stream"):
        user = _tagged(key, head)
        if user is None or user in seen:
            continue
        seen.add(user)
        record = await _inbox_record(client, store.stream_key(user), store.read_key(user), user)
        write_record(out, record)
        summary.inboxes += 1
        summary.notifications += len(record["notifications"])


# -- restore --------------------------------------------------------------------------------

async def restore(config: Config, records: list[dict[str, Any]]) -> Summary:
    """Write the channels and inboxes of ``records`` (from read_lines) into Redis.

    Error handling: BackupError naming the record for a malformed one, or for a Redis
    failure (records before it are restored; running the restore again is safe: what
    was restored is then skipped as existing).
    """
    prefix = config.engine.redis.prefix
    keys, summary = KeyScheme(prefix), Summary()
    topology = topology_from_config(config)
    store = RedisNotificationStore(topology.client, prefix=prefix)
    number = 0
    try:
        if isinstance(topology, Cluster):
            await topology.initialize()
        now = await _redis_now(_scan_clients(topology)[0])
        for number, record in enumerate(records[1:-1], 2):
            if record["kind"] == "channel":
                await _restore_channel(topology, keys, record, now, summary)
            elif record["kind"] == "inbox":
                await _restore_inbox(topology, store, record, now, summary)
            else:
                raise BackupError(f"record {number}: unknown kind {record['kind']!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"record {number}: malformed ({type(exc).__name__}: {exc})") from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise BackupError(f"record {number}: redis: {type(exc).__name__}: {exc}") from None
    finally:
        await topology.close()
    return summary


async def _redis_now(client: Any) -> int:
    """Redis' clock in ms (expiries in the file are in Redis time)."""
    answer = await client.time()
    if isinstance(answer, dict):  # a Cluster asked several nodes
        answer = next(iter(answer.values()))
    seconds, micros = answer
    return int(seconds) * 1000 + int(micros) // 1000


async def _restore_channel(topology: Topology, keys: KeyScheme, record: dict[str, Any],
                           now: int, summary: Summary) -> None:
    channel = str(record["channel"])
    meta_left = _ttl_left(record["meta_expire_at"], now)
    if meta_left is None:
        summary.skip("channels expired since the backup")
        return
    pubs = record["publications"]
    stream_left = _ttl_left(record["stream_expire_at"], now) if pubs else 0
    if stream_left is None:
        pubs, stream_left = [], 0  # the history expired; the position (epoch, top) stays
    client = topology.client(channel)
    staging = keys.staging(channel)
    await client.delete(staging)
    for start in range(0, len(pubs), CHUNK):
        args: list[Any] = []
        for offset, body in pubs[start:start + CHUNK]:
            args += [f"{int(offset)}-0", _unb64(body)]
        await STAGE(client, [staging], args)
    done = await COMMIT_CHANNEL(
        client, [keys.meta(channel), keys.stream(channel), staging],
        [new_epoch(), int(record["top"]), str(record["epoch"]), meta_left, stream_left])
    if not done:
        summary.skip("channels that already hold publications")
        return
    summary.channels += 1
    summary.publications += len(pubs)


async def _restore_inbox(topology: Topology, store: RedisNotificationStore,
                         record: dict[str, Any], now: int, summary: Summary) -> None:
    user = str(record["user"])
    stream_left = _ttl_left(record["stream_expire_at"], now)
    notes = record["notifications"]
    if stream_left is None or not notes:
        summary.skip("inboxes expired since the backup")
        return
    read_left = _ttl_left(record["read_expire_at"], now)
    read = [str(r) for r in record["read"]] if read_left is not None else []
    args: list[Any] = [stream_left, read_left or 0, len(notes)]
    for note_id, fields in notes:
        args += [str(note_id), len(fields) // 2, *(_unb64(f) for f in fields)]
    key = store.stream_key(user)
    done = await RESTORE_INBOX(topology.client(key), [key, store.read_key(user)], args + read)
    if not done:
        summary.skip("inboxes that already exist")
        return
    summary.inboxes += 1
    summary.notifications += len(notes)
