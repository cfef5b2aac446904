"""Centrifugo v6's HTTP proxy JSON: requests out, answers in.

Requests: ``{"client", "transport", "protocol", "encoding", ...}`` plus the event's fields,
zero values left out (Go's ``omitempty``). Payloads are embedded as raw JSON, or with
``binary_encoding`` as base64 in ``b64data`` (``encoding`` says which: "json" or
"binary").

Answers: ``{"result": {...}}``, ``{"error": {"code", "message", "temporary"}}`` or
``{"disconnect": {"code", "reason"}}`` (checked in that order of precedence: disconnect,
then error, then result, as Centrifugo's handlers do); ``{}`` is "no result". Payloads of
a result come as JSON values (``info``, ``data``, ``meta``) or base64 (``b64info``,
``b64data``).

Error handling: ``encode_request`` raises ProxyFailure("encoding") for a payload that is
not JSON without ``binary_encoding``; ``decode_answer`` raises ProxyFailure("response")
for an answer of the wrong shape or bad base64 (the client then gets error 100).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

import orjson

from broker.proxy.types import (
    ConnectResult,
    Override,
    ProxyDisconnect,
    ProxyError,
    ProxyFailure,
    PublishResult,
    RefreshResult,
    Request,
    RpcResult,
    SubRefreshResult,
    SubscribeOptions,
    SubscribeResult,
)

Answer = Any  # a result dataclass, ProxyError, ProxyDisconnect or None

PAYLOADS = ("data", "meta")  # request fields holding raw bytes


def encode_request(request: Request, binary: bool) -> bytes:
    """The JSON body for ``request`` (see module docstring)."""
    out: dict[str, Any] = {"client": request.client, "transport": request.transport,
                           "protocol": request.protocol,
                           "encoding": "binary" if binary else "json"}
    for f in dataclasses.fields(request):
        name = f.name
        if name in out or name == "headers":
            continue
        value = getattr(request, name)
        if not value:
            continue  # omitempty
        if name == "data" and binary:
            out["b64data"] = base64.b64encode(value).decode()
        elif name in PAYLOADS:
            out[name] = _raw_json(value, name)
        else:
            out[name] = value
    return orjson.dumps(out)


def _raw_json(value: bytes, name: str) -> orjson.Fragment:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ProxyFailure(f"{name} is not JSON: set binary_encoding on this proxy",
                           "encoding") from None
    return orjson.Fragment(value)


def decode_answer(kind: str, answer: Any) -> Answer:
    """The answer ``answer`` (a parsed JSON object) to a ``kind`` request."""
    if not isinstance(answer, dict):
        raise ProxyFailure(f"{kind} proxy answered {type(answer).__name__}, not an object",
                           "response")
    disconnect = answer.get("disconnect")
    if disconnect is not None:
        obj = _object(disconnect, "disconnect")
        return ProxyDisconnect(_int(obj, "code"), _str(obj, "reason"))
    error = answer.get("error")
    if error is not None:
        obj = _object(error, "error")
        return ProxyError(_int(obj, "code"), _str(obj, "message"), bool(obj.get("temporary")))
    result = answer.get("result")
    if result is None:
        return None
    return DECODERS[kind](_object(result, "result"))


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProxyFailure(f"{what} must be an object, got {type(value).__name__}", "response")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProxyFailure(f"{key} must be an integer", "response")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key) or ""
    if not isinstance(value, str):
        raise ProxyFailure(f"{key} must be a string", "response")
    return value


def _payload(obj: dict[str, Any], key: str, *, b64_first: bool = True) -> bytes | None:
    """``b64<key>`` decoded, else ``<key>`` as compact JSON bytes (None when neither)."""
    b64 = obj.get("b64" + key)
    raw = obj.get(key)
    if b64 and (b64_first or raw is None):
        if not isinstance(b64, str):
            raise ProxyFailure(f"b64{key} must be a string", "response")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ProxyFailure(f"b64{key} is not base64", "response") from None
    return None if raw is None else orjson.dumps(raw)


def _override(obj: dict[str, Any]) -> Override | None:
    raw = obj.get("override")
    if not isinstance(raw, dict):
        return None

    def flag(name: str) -> bool | None:  # {"presence": {"value": true}}
        value = raw.get(name)
        return bool(value.get("value")) if isinstance(value, dict) else None

    return Override(flag("presence"), flag("join_leave"), flag("force_push_join_leave"),
                    flag("force_recovery"), flag("force_positioning"))


def _subscribe_options(obj: dict[str, Any]) -> SubscribeOptions:
    return SubscribeOptions(_int(obj, "expire_at"), _payload(obj, "info"),
                            _payload(obj, "data"), _override(obj))


def _connect(obj: dict[str, Any]) -> ConnectResult:
    channels = obj.get("channels") or []
    subs = obj.get("subs") or {}
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ProxyFailure("channels must be a list of strings", "response")
    if not isinstance(subs, dict):
        raise ProxyFailure("subs must be an object", "response")
    return ConnectResult(
        user=_str(obj, "user"), expire_at=_int(obj, "expire_at"),
        info=_payload(obj, "info"), data=_payload(obj, "data"), channels=list(channels),
        subs={str(ch): _subscribe_options(_object(o, f"subs.{ch}")) for ch, o in subs.items()},
        meta=None if obj.get("meta") is None else orjson.dumps(obj["meta"]))


def _refresh(obj: dict[str, Any]) -> RefreshResult:
    return RefreshResult(bool(obj.get("expired")), _int(obj, "expire_at"),
                         _payload(obj, "info"),
                         None if obj.get("meta") is None else orjson.dumps(obj["meta"]))


def _subscribe(obj: dict[str, Any]) -> SubscribeResult:
    return SubscribeResult(_int(obj, "expire_at"), _payload(obj, "info"),
                           _payload(obj, "data"), _override(obj))


def _publish(obj: dict[str, Any]) -> PublishResult:
    tags = obj.get("tags")
    if tags is not None and not (isinstance(tags, dict) and all(
            isinstance(v, str) for v in tags.values())):
        raise ProxyFailure("tags must be an object of strings", "response")
    # Centrifugo prefers ``data`` over ``b64data`` here (the other events prefer b64).
    return PublishResult(_payload(obj, "data", b64_first=False), bool(obj.get("skip_history")),
                         tags or None, _str(obj, "idempotency_key"), bool(obj.get("delta")))


def _sub_refresh(obj: dict[str, Any]) -> SubRefreshResult:
    return SubRefreshResult(bool(obj.get("expired")), _int(obj, "expire_at"),
                            _payload(obj, "info"))


def _rpc(obj: dict[str, Any]) -> RpcResult:
    return RpcResult(_payload(obj, "data"))


DECODERS = {"connect": _connect, "refresh": _refresh, "subscribe": _subscribe,
            "publish": _publish, "sub_refresh": _sub_refresh, "rpc": _rpc}
