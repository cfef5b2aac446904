"""Compact JWS parsing and HS256/384/512 verification with the standard library.

Why not PyJWT here: importing ``jwt`` imports ``cryptography`` for its RSA/EC
algorithms, the slowest import of a node's start. A node whose tokens are HMAC-signed
(the common case) verifies them here and never loads either; RS*/ES* tokens still go
through PyJWT (broker.auth imports it on first use).

The checks mirror PyJWT 2.x for the HMAC case: three dot-separated base64url segments
(padding optional), a JSON object header whose ``kid``, when present, is a string, a
signature compared in constant time over ``header.payload``, then a payload that is a
JSON object. Headers PyJWT treats specially (``b64``, ``crit``) are left to PyJWT:
``plain`` is False for them and broker.auth delegates.

Per connect, the work is one HMAC, two base64 decodes and one ``json.loads``: the header
of a token whose signature verified is kept (at most ``HEADERS_MAX`` distinct headers,
so only a key holder adds any), and the next token with the same header segment -- every
token one backend signs -- skips decoding it.

Error handling: :class:`JwsError` (a ValueError) with PyJWT's wording; ``malformed``
is True for a token that cannot even be parsed (as opposed to a bad signature or
payload).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from typing import Any

import orjson

__all__ = ["HMAC_HASHES", "JwsError", "Parsed", "parse", "verify_hmac"]

HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

HEADERS_MAX = 64
KEYS_MAX = 64
# Header segment -> its decoded header, for tokens whose signature verified. The dicts
# are shared by every token with that segment: read them, never change them.
_HEADERS: dict[bytes, dict[str, Any]] = {}
_URLSAFE = bytes.maketrans(b"-_", b"+/")
# (algorithm, key) -> the hash states after the key's inner and outer pads (RFC 2104).
# ``hmac.digest`` sets up the key (and, with OpenSSL 3, looks the digest up) on every
# call: a third of a token's check. Copying two states keyed once gives the same MAC.
_KEYED: dict[tuple[str, bytes], tuple[Any, Any]] = {}
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class JwsError(ValueError):
    """A token failed parsing or verification; ``malformed``: it could not be parsed."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


class Parsed:
    """A token split into its parts; nothing is verified yet. ``header`` may be shared
    with other tokens (see ``_HEADERS``): read-only."""

    __slots__ = ("header", "header_segment", "payload_segment", "signature_segment",
                 "signing_input")

    def __init__(self, signing_input: bytes, header: dict[str, Any], payload_segment: bytes,
                 signature_segment: bytes, header_segment: bytes = b"") -> None:
        self.signing_input = signing_input
        self.header = header
        self.payload_segment = payload_segment
        self.signature_segment = signature_segment
        self.header_segment = header_segment

    @property
    def plain(self) -> bool:
        """True when no header parameter changes how the token is verified."""
        return "b64" not in self.header and "crit" not in self.header


def _b64url(segment: bytes, what: str, *, malformed: bool = False) -> bytes:
    # base64.urlsafe_b64decode without its wrappers: the same translation and decoder.
    missing = -len(segment) % 4
    try:
        return binascii.a2b_base64(segment.translate(_URLSAFE) + b"=" * missing)
    except (binascii.Error, ValueError):
        raise JwsError(f"Invalid {what} padding", malformed=malformed) from None


def _loads(data: bytes) -> Any:
    """``json.loads`` (what PyJWT uses), through orjson when it can: both give the same
    value for what orjson accepts; what it refuses (NaN, integers over 64 bits, ...)
    takes json's own path and verdict."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def parse(token: str) -> Parsed:
    """Split ``token`` and decode its header. Raises JwsError (malformed)."""
    try:
        raw = token.encode()
        signing_input, signature = raw.rsplit(b".", 1)
        header_segment, payload_segment = signing_input.split(b".", 1)
    except (ValueError, UnicodeError):
        raise JwsError("Not enough segments", malformed=True) from None
    known = _HEADERS.get(header_segment)
    if known is not None:
        return Parsed(signing_input, known, payload_segment, signature, header_segment)
    try:
        header = json.loads(_b64url(header_segment, "header", malformed=True))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, JwsError):
            raise
        raise JwsError(f"Invalid header string: {exc}", malformed=True) from None
    if not isinstance(header, dict):
        raise JwsError("Invalid header string: must be a json object", malformed=True)
    if "kid" in header and not isinstance(header["kid"], str):
        raise JwsError("Key ID header parameter must be a string", malformed=True)
    return Parsed(signing_input, header, payload_segment, signature, header_segment)


def _hmac(algorithm: str, key: bytes, message: bytes) -> bytes:
    """HMAC of ``message`` under ``key`` with ``algorithm``'s hash (what ``hmac.digest``
    gives), from the pads' hash states computed once per key."""
    keyed = _KEYED.get((algorithm, key))
    if keyed is None:
        new = HMAC_HASHES[algorithm]
        block = new().block_size
        padded = (new(key).digest() if len(key) > block else key).ljust(block, b"\0")
        keyed = (new(padded.translate(_IPAD)), new(padded.translate(_OPAD)))
        if len(_KEYED) < KEYS_MAX:  # keys come from the config: a handful
            _KEYED[(algorithm, key)] = keyed
    inner, outer = keyed[0].copy(), keyed[1].copy()
    inner.update(message)
    outer.update(inner.digest())
    return bytes(outer.digest())


def verify_hmac(token: Parsed, algorithm: str, key: bytes) -> dict[str, Any]:
    """The claims of ``token`` if its HMAC signature under ``key`` is good.

    ``algorithm`` must be a key of HMAC_HASHES (the caller matched it to the header).
    Error handling: JwsError for bad padding, a bad signature, or claims that are not
    a JSON object.
    """
    payload = _b64url(token.payload_segment, "payload")
    signature = _b64url(token.signature_segment, "crypto")
    expected = _hmac(algorithm, key, token.signing_input)
    if not hmac.compare_digest(signature, expected):
        raise JwsError("Signature verification failed")
    if len(_HEADERS) < HEADERS_MAX and token.header_segment:
        _HEADERS.setdefault(token.header_segment, token.header)
    try:
        claims = _loads(payload)
    except (ValueError, RecursionError) as exc:
        raise JwsError(f"Invalid payload string: {exc}") from None
    if not isinstance(claims, dict):
        raise JwsError("Invalid payload string: must be a json object")
    return claims
