"""JWT verification for connection and subscription tokens, with Centrifugo's claims.

Keys come from ``client.token`` (and ``client.subscription_token`` when it is enabled,
Centrifugo's rule: otherwise subscription tokens are verified with the connection keys).
Supported: HS256/384/512 (``hmac_secret_key``), RS256/384/512 (``rsa_public_key``),
ES256/384/512 (``ecdsa_public_key``, algorithm fixed by the curve) and a JWKS file
(``jwks_file``, key picked by the token's ``kid``). The token's ``alg`` header must be one
the configured key type allows; "none" never is.

Checks follow Centrifugo v6: signature, then a connection token must not carry a
``channel`` claim (so a subscription token cannot be replayed as a connection token) and a
subscription token must; then ``aud``/``iss`` when configured; then ``exp``/``nbf``.

HS* tokens are verified by broker.jws (standard library); PyJWT, and with it
``cryptography``, is imported on the first RS*/ES* token (or by ``make_token``), so an
HMAC-only node never loads them.

Error handling: every failure is a :class:`TokenError`; ``expired`` is True only for a
token whose signature is good but whose ``exp`` has passed (or ``nbf`` is in the future,
as upstream does), so the broker can answer 109 "token expired" (the client refreshes)
instead of 3500 "invalid token". No other exception escapes the verify methods.
"""

from __future__ import annotations

import base64
import binascii
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from broker import jws
from broker.config import SubscriptionTokenConfig, TokenConfig
from broker.config.keys import KeySet, VerifyKey, load_keyset

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["ConnectToken", "SubscriptionToken", "TokenError", "TokenVerifier", "make_token"]


def _pyjwt() -> ModuleType:
    """PyJWT, imported on first use (it imports ``cryptography``: slow)."""
    import jwt
    from jwt.warnings import InsecureKeyLengthWarning

    # A short HMAC key is reported once at start (broker.config.checks.config_warnings);
    # PyJWT would write its warning to stderr on every token verified with it.
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    return jwt

# PyJWT's own claim checks are off: Chorus checks claims itself, in upstream's order and
# with upstream's outcomes (e.g. aud/iss failures are "invalid", never "expired").
_DECODE_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}


class TokenError(Exception):
    """A token was rejected. ``expired`` is True when only its lifetime is the problem."""

    def __init__(self, message: str = "invalid token", *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class ConnectToken:
    """Verified connection claims.

    ``expire_at``: unix seconds when the connection expires, None = never (from the
    ``expire_at`` claim when present, 0 meaning never; else from ``exp``). It may already
    be past when set through ``expire_at``: the caller compares it with its clock.
    ``info``: ``b64info`` decoded, else ``info`` as compact JSON bytes.
    ``subs``: the ``subs`` claim as given (channel -> options object), read-only.
    """

    user: str
    expire_at: int | None
    info: bytes | None
    channels: tuple[str, ...]
    subs: Mapping[str, Any]
    meta: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class SubscriptionToken:
    """Verified subscription claims; the extra fields default so callers may ignore them.

    ``client``: the ``client`` claim ("" = any connection); when set it must equal the
    subscribing connection's client id. ``data``: ``b64data``/``data`` for the subscribe
    reply. ``override``: the ``override`` claim (presence, join_leave, ... -> {value}).
    """

    user: str
    channel: str
    expire_at: int | None
    info: bytes | None
    client: str = ""
    data: bytes | None = None
    override: Mapping[str, Any] | None = None


class _KeyedVerifier:
    """Signature and standard-claim checks for one key set (connection or subscription)."""

    def __init__(
        self, keys: KeySet, audience: str, issuer: str, clock: Callable[[], float]
    ) -> None:
        self._keys = keys
        self._audience = audience
        self._issuer = issuer
        self._clock = clock

    def claims(self, token: str) -> dict[str, Any]:
        """Verify the signature and return the claims; lifetime is checked by ``check_time``."""
        if not isinstance(token, str) or not token:
            raise TokenError("empty token")
        try:
            parsed = jws.parse(token)
        except jws.JwsError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        header = parsed.header
        alg = header.get("alg")
        key = self._select(alg, header.get("kid"))
        assert isinstance(alg, str)  # _select rejected anything else
        if alg in jws.HMAC_HASHES and parsed.plain:
            try:
                return jws.verify_hmac(parsed, alg, key.key)
            except jws.JwsError as exc:
                raise TokenError(f"invalid token: {exc}") from None
        jwt = _pyjwt()
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], options=_DECODE_OPTIONS)
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        if not isinstance(claims, dict):
            raise TokenError("invalid token: claims are not an object")
        return claims

    def _select(self, alg: Any, kid: Any) -> VerifyKey:
        if not isinstance(alg, str):
            raise TokenError("invalid token: no algorithm")
        if self._keys.by_kid:
            key = self._keys.by_kid.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise TokenError(f"invalid token: unknown kid {kid!r}")
        else:
            found = self._keys.by_algorithm.get(alg)
            if found is None:
                raise TokenError(f"invalid token: algorithm {alg!r} is not enabled")
            key = found
        if alg not in key.algorithms:
            raise TokenError(f"invalid token: algorithm {alg!r} does not fit the key")
        return key

    def check_audience_issuer(self, claims: Mapping[str, Any]) -> None:
        if self._audience:
            aud = claims.get("aud")
            auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if self._audience not in auds:
                raise TokenError("invalid token: invalid audience")
        if self._issuer and claims.get("iss") != self._issuer:
            raise TokenError("invalid token: invalid issuer")

    def check_time(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp = _number(claims, "exp")
        if exp is not None and now >= exp:
            raise TokenError("token expired", expired=True)
        nbf = _number(claims, "nbf")
        if nbf is not None and now < nbf:
            raise TokenError("token not valid yet", expired=True)  # upstream: "expired"


class TokenVerifier:
    """Verifies connection and subscription JWTs against the configured keys.

    Resource handling: keys (PEM, JWKS file) are loaded once here; a changed JWKS file
    needs a new TokenVerifier.

    Error handling: the constructor raises ConfigError for bad key material (config
    validation has normally caught it already). With no key configured every token is
    rejected with TokenError.
    """

    def __init__(
        self,
        token_cfg: TokenConfig,
        sub_token_cfg: SubscriptionTokenConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connect = _KeyedVerifier(
            load_keyset(token_cfg, "client.token"), token_cfg.audience, token_cfg.issuer, clock
        )
        self._subscribe = self._connect
        if sub_token_cfg is not None and sub_token_cfg.enabled:
            keys = load_keyset(sub_token_cfg, "client.subscription_token")
            aud, iss = sub_token_cfg.audience, sub_token_cfg.issuer
            self._subscribe = _KeyedVerifier(keys, aud, iss, clock)

    def verify_connect(self, token: str) -> ConnectToken:
        """Verify a connection token. Raises TokenError (``expired`` set when expired)."""
        try:
            return self._verify_connect(token)
        except TokenError:
            raise
        except Exception as exc:  # a malformed claim must never crash the connection actor
            raise TokenError(f"invalid token: {type(exc).__name__}: {exc}") from None

    def verify_subscribe(
        self, token: str, *, channel: str | None = None, client: str | None = None
    ) -> SubscriptionToken:
        """Verify a subscription token. Raises TokenError (``expired`` set when expired).

        When given, ``channel`` must equal the ``channel`` claim and ``client`` must equal
        the ``client`` claim if the token has one (Centrifugo's checks).
        """
        try:
            result = self._verify_subscribe(token)
        except TokenError:
            raise
        except Exception as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}: {exc}") from None
        if channel is not None and result.channel != channel:
            raise TokenError("invalid token: channel mismatch")
        if client is not None and result.client and result.client != client:
            raise TokenError("invalid token: client mismatch")
        return result

    def _verify_connect(self, token: str) -> ConnectToken:
        v = self._connect
        claims = v.claims(token)
        if claims.get("channel"):
            raise TokenError("invalid token: a connection token must not have a channel claim")
        v.check_audience_issuer(claims)
        v.check_time(claims)
        channels = claims.get("channels") or []
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise TokenError("invalid token: channels must be a list of strings")
        subs = claims.get("subs") or {}
        if not isinstance(subs, dict) or not all(isinstance(s, dict) for s in subs.values()):
            raise TokenError("invalid token: subs must map channels to objects")
        meta = claims.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise TokenError("invalid token: meta must be an object")
        return ConnectToken(
            user=_string(claims, "sub"),
            expire_at=_expire_at(claims),
            info=_payload(claims, "info", "b64info"),
            channels=tuple(channels),
            subs=MappingProxyType(subs),
            meta=MappingProxyType(meta) if meta is not None else None,
        )

    def _verify_subscribe(self, token: str) -> SubscriptionToken:
        v = self._subscribe
        claims = v.claims(token)
        v.check_audience_issuer(claims)
        v.check_time(claims)
        channel = _string(claims, "channel")
        if not channel:
            raise TokenError("invalid token: a subscription token needs a channel claim")
        override = claims.get("override")
        if override is not None and not isinstance(override, dict):
            raise TokenError("invalid token: override must be an object")
        return SubscriptionToken(
            user=_string(claims, "sub"),
            channel=channel,
            expire_at=_expire_at(claims),
            info=_payload(claims, "info", "b64info"),
            client=_string(claims, "client"),
            data=_payload(claims, "data", "b64data"),
            override=MappingProxyType(override) if override is not None else None,
        )


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"invalid token: {name} must be a number")
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TokenError(f"invalid token: {name} must be a string")
    return value


def _expire_at(claims: Mapping[str, Any]) -> int | None:
    """Centrifugo's rule: ``expire_at`` wins when present (0 = never), else ``exp``."""
    expire_at = _number(claims, "expire_at")
    if expire_at is not None:
        return int(expire_at) if expire_at > 0 else None
    exp = _number(claims, "exp")
    return int(exp) if exp is not None else None


def _payload(claims: Mapping[str, Any], json_name: str, b64_name: str) -> bytes | None:
    """``b64<name>`` decoded if non-empty, else ``<name>`` re-encoded as compact JSON."""
    b64 = claims.get(b64_name)
    if b64:
        if not isinstance(b64, str):
            raise TokenError(f"invalid token: {b64_name} must be a string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise TokenError(f"invalid token: {b64_name} is not valid base64") from None
    value = claims.get(json_name)
    return None if value is None else orjson.dumps(value)


def make_token(
    secret: str,
    user: str,
    *,
    channel: str | None = None,
    ttl: float | None = None,
    info: Any = None,
    channels: Sequence[str] = (),
    algorithm: str = "HS256",
    key: Any = None,
    kid: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a token with Centrifugo's claims (for ``chorus gentoken`` and tests).

    ``channel`` makes it a subscription token. ``ttl`` seconds sets ``exp`` (None = no
    expiry). ``key`` (a private key object or PEM) replaces ``secret`` for RS*/ES*;
    ``kid`` goes into the header; ``claims`` adds or replaces any other claim.
    """
    now = int(time.time())
    payload: dict[str, Any] = {"sub": user, "iat": now}
    if ttl is not None:
        payload["exp"] = now + int(ttl)
    if channel is not None:
        payload["channel"] = channel
    if info is not None:
        payload["info"] = info
    if channels:
        payload["channels"] = list(channels)
    if claims:
        payload.update(claims)
    headers = {"kid": kid} if kid is not None else None
    signing_key = key if key is not None else secret
    return _pyjwt().encode(payload, signing_key, algorithm=algorithm, headers=headers)
