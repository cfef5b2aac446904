"""The fossil delta encoder, checked against the official SDK's decoder (centrifuge-python)."""

from __future__ import annotations

import json

from centrifuge.fossil import apply_delta
from centrifuge.fossil import checksum as sdk_checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol.fossil import checksum, create_delta, is_utf8


def roundtrip(source: bytes, target: bytes) -> bytes:
    delta = create_delta(source, target)
    assert apply_delta(source, delta) == target
    return delta


def test_small_edit_of_a_json_document_gives_a_small_delta() -> None:
    doc = {"ticker": "AAPL", "price": "100.25", "history": list(range(60)), "note": "x" * 80}
    source = json.dumps(doc).encode()
    doc["price"] = "101.50"
    target = json.dumps(doc).encode()
    delta = roundtrip(source, target)
    assert len(delta) < len(target) // 5
    assert b"@" in delta  # it copies from the source rather than inserting everything


def test_identical_inputs_copy_everything() -> None:
    data = b"0123456789abcdef" * 20
    delta = roundtrip(data, data)
    assert delta.count(b":") == 0


def test_short_or_empty_source_inserts_the_target_whole() -> None:
    delta = roundtrip(b"", b"hello")
    assert delta.startswith(b"5\n5:hello") and delta.endswith(b";")
    roundtrip(b"tiny", b"something else entirely")
    roundtrip(b"x" * 40, b"")


def test_unrelated_inputs_still_decode() -> None:
    roundtrip(bytes(range(256)) * 3, bytes(reversed(range(256))) * 2)


def test_checksum_matches_the_sdk_for_every_tail_length() -> None:
    for n in range(0, 40):
        data = bytes((i * 37 + 11) % 256 for i in range(n))
        assert checksum(data) == sdk_checksum(data)


def test_utf8_check() -> None:
    assert is_utf8("naïve ✓".encode())
    assert not is_utf8("✓".encode()[:2])


edits = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 12), st.binary(max_size=12)),
                 max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), edits)
def test_any_edit_roundtrips(source: bytes, changes: list[tuple[int, int, bytes]]) -> None:
    target = bytearray(source)
    for at, cut, insert in changes:
        at = min(at, len(target))
        target[at:at + cut] = insert
    roundtrip(source, bytes(target))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_pair_roundtrips(source: bytes, target: bytes) -> None:
    roundtrip(source, target)
