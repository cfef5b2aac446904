"""Centrifugo v6's proxy JSON: requests as it sends them, answers as it reads them."""

from __future__ import annotations

import base64

import orjson
import pytest

from broker.proxy.codec import decode_answer, encode_request
from broker.proxy.types import (
    ConnectRequest,
    ConnectResult,
    Override,
    ProxyDisconnect,
    ProxyError,
    ProxyFailure,
    PublishRequest,
    PublishResult,
    RefreshResult,
    RpcResult,
    SubscribeResult,
)


def base() -> dict[str, object]:
    return {"client": "c1", "transport": "websocket", "protocol": "json", "headers": {"a": "b"}}


def test_requests_leave_out_zero_values_and_embed_json_payloads() -> None:
    body = orjson.loads(encode_request(ConnectRequest(**base(), data=b'{"x": [1, 2]}',
                                                      name="js"), binary=False))
    assert body == {"client": "c1", "transport": "websocket", "protocol": "json",
                    "encoding": "json", "data": {"x": [1, 2]}, "name": "js"}


def test_binary_encoding_sends_base64() -> None:
    raw = b"\x00\xffnot json"
    body = orjson.loads(encode_request(PublishRequest(**base(), user="u", channel="c",
                                                      data=raw), binary=True))
    assert body["encoding"] == "binary" and base64.b64decode(body["b64data"]) == raw
    assert "data" not in body


def test_a_payload_that_is_not_json_needs_binary_encoding() -> None:
    with pytest.raises(ProxyFailure, match="binary_encoding") as failure:
        encode_request(PublishRequest(**base(), data=b"\x00\x01"), binary=False)
    assert failure.value.reason == "encoding"


def test_disconnect_wins_over_error_wins_over_result() -> None:
    answer = decode_answer("rpc", {"result": {"data": 1}, "error": {"code": 1000},
                                   "disconnect": {"code": 4000, "reason": "r"}})
    assert isinstance(answer, ProxyDisconnect) and answer.to_code().code == 4000
    assert answer.to_code().reconnect  # 4000-4499 reconnect
    error = decode_answer("rpc", {"result": {}, "error": {"code": 1000, "message": "m",
                                                          "temporary": True}})
    assert isinstance(error, ProxyError) and error.to_code().temporary
    assert decode_answer("rpc", {}) is None


def test_connect_result_fields() -> None:
    result = decode_answer("connect", {"result": {
        "user": "56", "expire_at": 1700000000, "b64info": base64.b64encode(b"\x01").decode(),
        "data": {"d": 1}, "channels": ["a"], "meta": {"m": True},
        "subs": {"b": {"info": {"i": 1}, "override": {"presence": {"value": True}}}}}})
    assert result == ConnectResult(
        user="56", expire_at=1700000000, info=b"\x01", data=b'{"d":1}', channels=["a"],
        subs={"b": result.subs["b"]}, meta=b'{"m":true}')
    assert result.subs["b"].info == b'{"i":1}'
    assert result.subs["b"].override == Override(presence=True)


def test_other_results() -> None:
    assert decode_answer("refresh", {"result": {"expired": True}}) == RefreshResult(True)
    assert decode_answer("subscribe", {"result": {"expire_at": 5, "data": "x"}}) == \
        SubscribeResult(5, None, b'"x"')
    assert decode_answer("publish", {"result": {
        "data": {"a": 1}, "b64data": "AA==", "skip_history": True, "tags": {"t": "v"},
        "idempotency_key": "k", "delta": True}}) == \
        PublishResult(b'{"a":1}', True, {"t": "v"}, "k", True)  # data wins here
    assert decode_answer("rpc", {"result": {"b64data": "AAE="}}) == RpcResult(b"\x00\x01")


@pytest.mark.parametrize("answer", [
    [], {"result": []}, {"error": "x"}, {"disconnect": {"code": "4000"}},
    {"result": {"b64data": "%%%"}}, {"result": {"channels": [1]}},
    {"result": {"tags": {"a": 1}}},
])
def test_malformed_answers_are_failures(answer: object) -> None:
    kind = "publish" if isinstance(answer, dict) and "tags" in str(answer) else "connect"
    with pytest.raises(ProxyFailure) as failure:
        decode_answer("rpc" if "b64data" in str(answer) else kind, answer)
    assert failure.value.reason == "response"
