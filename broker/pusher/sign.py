"""Pusher's signatures: channel auth, user sign-in, server API requests, webhooks.

All of them are HMAC-SHA256 with the app secret, hex encoded, compared in constant time.

* Channel auth (``pusher:subscribe`` to ``private-``/``presence-``):
  ``auth = key + ":" + hmac(secret, socket_id + ":" + channel [+ ":" + channel_data])``.
* User sign-in (``pusher:signin``): ``hmac(secret, socket_id + "::user::" + user_data)``.
* Server API: ``auth_signature = hmac(secret, METHOD + "\\n" + PATH + "\\n" + query)``
  where query is every parameter but ``auth_signature``, sorted by name, ``k=v`` joined
  by ``&`` (values as sent, not re-escaped), and ``body_md5`` is the body's MD5 hex.
* Webhooks: ``X-Pusher-Signature = hmac(secret, body)``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["api_signature_ok", "channel_auth_ok", "hmac_hex", "signin_ok"]


def hmac_hex(secret: str, message: str | bytes) -> str:
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def channel_auth_ok(key: str, secret: str, socket_id: str, channel: str, auth: object,
                    channel_data: str | None = None) -> bool:
    """Whether ``auth`` (``key:signature``) signs this socket's subscription."""
    if not isinstance(auth, str):
        return False
    given_key, _, signature = auth.partition(":")
    message = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    return hmac.compare_digest(given_key, key) and hmac.compare_digest(
        signature, hmac_hex(secret, message))


def signin_ok(key: str, secret: str, socket_id: str, user_data: str, auth: object) -> bool:
    """Whether ``auth`` signs this socket's ``pusher:signin`` with ``user_data``."""
    if not isinstance(auth, str):
        return False
    given_key, _, signature = auth.partition(":")
    return hmac.compare_digest(given_key, key) and hmac.compare_digest(
        signature, hmac_hex(secret, f"{socket_id}::user::{user_data}"))


def api_string(method: str, path: str, query: Mapping[str, str]) -> str:
    """The string a server API request signs."""
    params = "&".join(f"{k}={query[k]}" for k in sorted(query) if k != "auth_signature")
    return f"{method.upper()}\n{path}\n{params}"


def api_signature_ok(secret: str, method: str, path: str, query: Mapping[str, str]) -> bool:
    signature = query.get("auth_signature", "")
    return hmac.compare_digest(signature, hmac_hex(secret, api_string(method, path, query)))
