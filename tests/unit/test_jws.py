"""broker.jws (HMAC tokens without PyJWT) accepts and rejects exactly what PyJWT does.

Differential: every token below goes through both; the claims must be equal when
PyJWT accepts, and broker.jws must raise when PyJWT raises.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import jwt
import pytest

from broker import jws

KEY = b"k" * 64  # long enough for HS512: no InsecureKeyLengthWarning


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: Any, claims: Any, key: bytes = KEY, alg: str = "HS256") -> str:
    """A token with an arbitrary header/claims JSON, correctly signed."""
    import hmac

    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing.encode(), jws.HMAC_HASHES[alg]).digest()
    return f"{signing}.{_b64(sig)}"


GOOD = jwt.encode({"sub": "42", "info": {"a": [1, 2]}}, KEY, algorithm="HS256")
TOKENS = {
    "hs256": GOOD,
    "hs384": jwt.encode({"sub": "1"}, KEY, algorithm="HS384"),
    "hs512": jwt.encode({"sub": "1"}, KEY, algorithm="HS512", headers={"kid": "a"}),
    "other key": jwt.encode({"sub": "1"}, b"x" * 64, algorithm="HS256"),
    "flipped signature": GOOD[:-2] + ("A" if GOOD[-2] != "A" else "B") + GOOD[-1],
    "tampered claims": GOOD.split(".")[0] + "." + _b64(b'{"sub":"admin"}') + "."
                       + GOOD.split(".")[2],
    "padded segments": ".".join(p + "=" * (-len(p) % 4) for p in GOOD.split(".")),
    "padded signature": GOOD + "=" * (-len(GOOD.rsplit(".", 1)[1]) % 4),
    "two segments": ".".join(GOOD.split(".")[:2]),
    "one segment": "abc",
    "empty signature": GOOD.rsplit(".", 1)[0] + ".",
    "header not json": "bm90IGpzb24." + GOOD.split(".", 1)[1],
    "header is a list": _forge([1], {"sub": "1"}),
    "kid not a string": _forge({"alg": "HS256", "kid": 7}, {"sub": "1"}),
    "claims are a list": _forge({"alg": "HS256"}, [1, 2]),
    "claims are a string": _forge({"alg": "HS256"}, "sub"),
    "bad base64 signature": GOOD.rsplit(".", 1)[0] + ".a",
}


def _pyjwt(token: str, alg: str) -> dict[str, Any] | None:
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, KEY, algorithms=[alg], options={"verify_signature": True})
    except jwt.PyJWTError:
        return None
    assert header["alg"] == alg
    return claims


def _ours(token: str, alg: str) -> dict[str, Any] | None:
    try:
        parsed = jws.parse(token)
        assert parsed.plain
        return jws.verify_hmac(parsed, alg, KEY)
    except jws.JwsError:
        return None


@pytest.mark.parametrize("name", list(TOKENS))
def test_same_verdict_and_claims_as_pyjwt(name: str) -> None:
    token = TOKENS[name]
    alg = "HS256"
    with contextlib.suppress(jwt.PyJWTError):
        alg = jwt.get_unverified_header(token).get("alg", "HS256")
    expected = _pyjwt(token, alg)
    assert _ours(token, alg) == expected
    if name in ("hs256", "hs384", "hs512", "padded signature"):
        assert expected is not None  # the accepting cases do accept


def test_parse_marks_headers_that_change_verification_for_pyjwt() -> None:
    assert not jws.parse(_forge({"alg": "HS256", "b64": False}, {})).plain
    assert not jws.parse(_forge({"alg": "HS256", "crit": ["b64"]}, {})).plain
    assert jws.parse(GOOD).plain


def test_malformed_is_set_only_for_unparseable_tokens() -> None:
    with pytest.raises(jws.JwsError) as error:
        jws.parse("abc")
    assert error.value.malformed
    with pytest.raises(jws.JwsError) as error:
        jws.verify_hmac(jws.parse(TOKENS["other key"]), "HS256", KEY)
    assert not error.value.malformed and "Signature verification failed" in str(error.value)


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_from_keyed_pads_is_the_standard_mac(algorithm: str) -> None:
    """Keys shorter than, equal to and longer than the hash's block (hashed first, as
    RFC 2104 says), computed twice (the second from the kept pad states)."""
    import hashlib
    import hmac

    name = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}[algorithm]
    block = hashlib.new(name).block_size
    for size in (0, 1, 32, block - 1, block, block + 1, 3 * block):
        key = bytes(range(size % 256)) * (size // 256 + 1)
        key = key[:size]
        for message in (b"", b"header.payload", b"x" * 1000):
            expected = hmac.digest(key, message, name)
            assert jws._hmac(algorithm, key, message) == expected
            assert jws._hmac(algorithm, key, message) == expected
