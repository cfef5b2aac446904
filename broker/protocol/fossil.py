"""Fossil delta encoder: the format Centrifugo's ``delta: "fossil"`` subscriptions use.

A port of the reference algorithm (fossil-scm ``delta.c``, also in centrifuge's Go
``fdelta`` and the JS ``fossil-delta``): the source is indexed by a rolling hash over
16-byte blocks, the target is scanned for the longest copy from the source at each
position, and what no copy covers is inserted literally. The SDKs' ``apply_delta``
decodes the result. Pure functions on bytes, no state.

Delta layout: ``<target size>\\n`` then commands ``<n>@<offset>,`` (copy ``n`` source
bytes from ``offset``) and ``<n>:<n bytes>`` (insert), then ``<checksum>;``. Integers are
written in fossil's base-64 digits, most significant first.
"""

from __future__ import annotations

import struct

__all__ = ["checksum", "create_delta", "is_utf8"]

NHASH = 16  # bytes per hashed block; a copy shorter than this is never searched for
_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_SEARCH_LIMIT = 250  # hash-chain candidates tried per target position (as upstream)


def _put_int(out: bytearray, value: int) -> None:
    if value == 0:
        out += b"0"
        return
    digits = bytearray()
    while value > 0:
        digits.append(_DIGITS[value & 0x3F])
        value >>= 6
    digits.reverse()
    out += digits


def _digit_count(value: int) -> int:
    """How many base-64 digits ``_put_int`` writes for ``value``."""
    count, limit = 1, 64
    while value >= limit:
        count += 1
        limit <<= 6
    return count


def checksum(data: bytes) -> int:
    """Fossil's 32-bit checksum: the sum of big-endian 32-bit words, zero-padded."""
    tail = len(data) % 4
    if tail:
        data = data + b"\0" * (4 - tail)
    return sum(struct.unpack(f">{len(data) // 4}I", data)) & 0xFFFFFFFF


def _hash_at(data: bytes, pos: int) -> tuple[int, int]:
    """Rolling-hash halves (a, b) of the ``NHASH`` bytes at ``pos``."""
    a = b = 0
    for i in range(NHASH):
        x = data[pos + i]
        a += x
        b += (NHASH - i) * x
    return a & 0xFFFF, b & 0xFFFF


def _index_source(source: bytes, buckets: int) -> tuple[list[int], list[int]]:
    """Hash every aligned block of ``source``: ``landmark[h]`` is the last block with
    hash ``h``, ``collide[block]`` the previous block with the same hash (-1 ends)."""
    landmark = [-1] * buckets
    collide = [-1] * buckets
    for i in range(0, len(source) - NHASH, NHASH):
        a, b = _hash_at(source, i)
        h = (a | (b << 16)) % buckets
        block = i // NHASH
        collide[block] = landmark[h]
        landmark[h] = block
    return landmark, collide


def _best_copy(source: bytes, target: bytes, base: int, i: int, block: int,
               collide: list[int]) -> tuple[int, int, int]:
    """The best copy (count, source offset, literal size) for target position
    ``base + i`` among the hash chain starting at ``block``; count 0 if none pays."""
    len_src, len_out = len(source), len(target)
    best_cnt = best_ofst = best_lit = 0
    limit = _SEARCH_LIMIT
    while block >= 0 and limit > 0:
        limit -= 1
        src_pos = block * NHASH
        j, x, y = 0, src_pos, base + i
        while x < len_src and y < len_out and source[x] == target[y]:
            j, x, y = j + 1, x + 1, y + 1
        j -= 1
        k = 1
        while k < src_pos and k <= i and source[src_pos - k] == target[base + i - k]:
            k += 1
        k -= 1
        ofst, cnt = src_pos - k, j + k + 1
        # A copy must cost less than the bytes it replaces.
        size = _digit_count(i - k) + _digit_count(cnt) + _digit_count(ofst) + 3
        if cnt >= size and cnt > best_cnt:
            best_cnt, best_ofst, best_lit = cnt, ofst, i - k
        block = collide[block]
    return best_cnt, best_ofst, best_lit


def create_delta(source: bytes, target: bytes) -> bytes:
    """A fossil delta that turns ``source`` into ``target`` (``apply_delta(source, d)
    == target``). Never fails; for unrelated inputs the delta is ``target`` inserted
    whole plus a few bytes of framing, so callers compare sizes before using it."""
    out = bytearray()
    len_out = len(target)
    _put_int(out, len_out)
    out += b"\n"
    base = 0
    if len(source) > NHASH:
        buckets = (len(source) + NHASH - 1) // NHASH
        landmark, collide = _index_source(source, buckets)
        while base + NHASH < len_out:
            a, b = _hash_at(target, base)
            i = 0
            while True:
                cnt, ofst, lit = _best_copy(source, target, base, i,
                                            landmark[(a | (b << 16)) % buckets], collide)
                if cnt > 0:
                    if lit > 0:
                        _put_int(out, lit)
                        out += b":"
                        out += target[base:base + lit]
                        base += lit
                    base += cnt
                    _put_int(out, cnt)
                    out += b"@"
                    _put_int(out, ofst)
                    out += b","
                    break
                if base + i + NHASH >= len_out:
                    _put_int(out, len_out - base)
                    out += b":"
                    out += target[base:]
                    base = len_out
                    break
                # Roll the hash one byte forward.
                old, new = target[base + i], target[base + i + NHASH]
                a = (a - old + new) & 0xFFFF
                b = (b - NHASH * old + a) & 0xFFFF
                i += 1
    if base < len_out:
        _put_int(out, len_out - base)
        out += b":"
        out += target[base:]
    _put_int(out, checksum(target))
    out += b";"
    return bytes(out)


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (a JSON client gets the delta as a JSON string)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
