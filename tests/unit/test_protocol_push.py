"""The hot-path publication push: byte-identical to the generic encoder, readable by the
reference protobuf classes, and timed (printed, not asserted)."""

from __future__ import annotations

import timeit
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import (
    BINARY_PAYLOADS,
    JSON_PAYLOADS,
    pb_class,
    pb_to_dict,
    strip_length_prefix,
)

from broker.protocol import JSON_CODEC, PROTOBUF_CODEC, encode_publication_push
from broker.types import ClientInfo, Publication

CODECS: dict[str, tuple[Any, Any]] = {
    "json": (JSON_CODEC, JSON_PAYLOADS),
    "protobuf": (PROTOBUF_CODEC, BINARY_PAYLOADS),
}


def publications(payloads: Any) -> Any:
    optional_payload = st.none() | payloads
    infos = st.builds(
        ClientInfo, st.text(max_size=6), st.text(max_size=6), optional_payload, optional_payload
    )
    return st.builds(
        Publication,
        data=payloads,
        offset=st.integers(0, 2**64 - 1),
        info=st.none() | infos,
        tags=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        time=st.integers(0, 2**40),
    )


def push_dict(channel: str, pub: Publication) -> dict[str, Any]:
    """The push as the generic encoder takes it (zero fields may stay: it omits them)."""
    body: dict[str, Any] = {"data": pub.data}
    if pub.info is not None:
        info = pub.info
        body["info"] = {
            "user": info.user,
            "client": info.client,
            "conn_info": info.conn_info,
            "chan_info": info.chan_info,
        }
    body.update(offset=pub.offset, tags=pub.tags)
    return {"push": {"channel": channel, "pub": body}}


@pytest.mark.parametrize("codec_name", CODECS)
def test_fast_push_is_byte_identical_to_the_generic_encoder(codec_name: str) -> None:
    codec, payloads = CODECS[codec_name]

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=10), publications(payloads))
    def check(channel: str, pub: Publication) -> None:
        fast = encode_publication_push(codec, channel, pub)
        assert fast == codec.encode_reply(push_dict(channel, pub))
        [reply] = codec.decode_replies(fast)
        assert reply["push"]["pub"].get("offset", 0) == pub.offset
        assert reply["push"]["pub"].get("data", b"") == pub.data

    check()


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=10), publications(BINARY_PAYLOADS))
def test_fast_protobuf_push_parses_with_the_reference(channel: str, pub: Publication) -> None:
    frame = encode_publication_push(PROTOBUF_CODEC, channel, pub)
    parsed = pb_to_dict(pb_class("Reply").FromString(strip_length_prefix(frame)))
    assert parsed["push"]["channel"] == channel
    assert parsed["push"]["pub"].get("tags", {}) == (pub.tags or {})


@pytest.mark.parametrize("codec_name", CODECS)
def test_compacted_push_carries_the_channel_id_in_place_of_the_name(codec_name: str) -> None:
    """Channel compaction: ``Push.id`` set, ``Push.channel`` absent, byte-identical to
    the generic encoder of that dict."""
    codec, payloads = CODECS[codec_name]

    @settings(max_examples=100, deadline=None)
    @given(st.text(min_size=1, max_size=10), st.integers(1, 2**63 - 1), publications(payloads))
    def check(channel: str, channel_id: int, pub: Publication) -> None:
        fast = encode_publication_push(codec, channel, pub, channel_id)
        generic = push_dict(channel, pub)
        del generic["push"]["channel"]
        assert fast == codec.encode_reply({"push": {"id": channel_id, **generic["push"]}})
        [reply] = codec.decode_replies(fast)
        assert reply["push"]["id"] == channel_id and "channel" not in reply["push"]
        if codec is PROTOBUF_CODEC:
            parsed = pb_to_dict(pb_class("Reply").FromString(strip_length_prefix(fast)))
            assert int(parsed["push"]["id"]) == channel_id
            assert "channel" not in parsed["push"]

    check()


def test_push_encoding_micro_timing() -> None:
    """Prints µs per encode of a 100-byte payload push (run with -s to see it)."""
    info = ClientInfo("user-42", "c0ffee-client-id", b'{"name":"Alice"}', None)
    payload = b'{"text":"' + b"x" * 89 + b'"}'
    assert len(payload) == 100
    for label, pub in (
        ("plain", Publication(data=payload, offset=12345)),
        ("info+tags", Publication(data=payload, offset=12345, info=info, tags={"k": "v"})),
    ):
        for codec in (JSON_CODEC, PROTOBUF_CODEC):
            n = 20_000
            env = {"codec": codec, "pub": pub, "push_dict": push_dict}
            fast = timeit.timeit(
                'codec.encode_publication_push("chat", pub)', globals=env, number=n
            )
            generic = timeit.timeit(
                'codec.encode_reply(push_dict("chat", pub))', globals=env, number=n // 10
            )
            fast_us, generic_us = fast / n * 1e6, generic / (n // 10) * 1e6
            print(
                f"\nencode_publication_push {codec.name:8} {label:9}: {fast_us:.2f} µs"
                f" (generic encode_reply {generic_us:.2f} µs)"
            )
            [reply] = codec.decode_replies(codec.encode_publication_push("chat", pub))
            assert reply["push"]["pub"]["data"] == payload
