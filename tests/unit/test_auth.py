"""JWT verification with real keys: HS256, RS256, ES256, JWKS, and every rejection path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.auth import TokenError, TokenVerifier, make_token
from broker.config import ConfigError, SubscriptionTokenConfig, TokenConfig

SECRET = "s" * 64
OTHER_SECRET = "o" * 64


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hs() -> TokenVerifier:
    return TokenVerifier(TokenConfig(hmac_secret_key=SECRET))


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: Any, ec_key: Any) -> Path:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa-1", use="sig")
    ec_jwk.update(kid="ec-1")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    return path


def invalid(verifier: TokenVerifier, token: Any, *, subscribe: bool = False) -> TokenError:
    with pytest.raises(TokenError) as info:
        if subscribe:
            verifier.verify_subscribe(token)
        else:
            verifier.verify_connect(token)
    assert info.value.expired is False
    return info.value


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- accepted tokens ---------------------------------------------------------------------------


def test_hs256_connect_token_carries_centrifugo_claims(hs: TokenVerifier) -> None:
    token = make_token(
        SECRET,
        "42",
        ttl=60,
        info={"name": "Ann", "tags": [1, 2]},
        channels=["news", "chat:1"],
        claims={"subs": {"chat:1": {"info": {"a": 1}}}, "meta": {"plan": "pro"}},
    )
    ct = hs.verify_connect(token)
    assert ct.user == "42"
    assert ct.info == b'{"name":"Ann","tags":[1,2]}'
    assert ct.channels == ("news", "chat:1")
    assert dict(ct.subs) == {"chat:1": {"info": {"a": 1}}}
    assert ct.meta == {"plan": "pro"}
    assert ct.expire_at is not None and abs(ct.expire_at - (time.time() + 60)) < 5


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_every_hmac_algorithm_is_accepted(hs: TokenVerifier, alg: str) -> None:
    assert hs.verify_connect(make_token(SECRET, "u", algorithm=alg)).user == "u"


def test_anonymous_token_without_exp_never_expires(hs: TokenVerifier) -> None:
    ct = hs.verify_connect(make_token(SECRET, ""))
    assert (ct.user, ct.expire_at, ct.info, ct.channels, ct.meta) == ("", None, None, (), None)


def test_expire_at_overrides_exp(hs: TokenVerifier) -> None:
    later = int(time.time()) + 1000
    assert (
        hs.verify_connect(make_token(SECRET, "u", ttl=60, claims={"expire_at": later})).expire_at
        == later
    )
    assert (
        hs.verify_connect(make_token(SECRET, "u", ttl=60, claims={"expire_at": 0})).expire_at
        is None
    )


def test_b64info_wins_over_info(hs: TokenVerifier) -> None:
    raw = b"\x00\x01binary"
    token = make_token(
        SECRET, "u", info={"x": 1}, claims={"b64info": base64.b64encode(raw).decode()}
    )
    assert hs.verify_connect(token).info == raw


def test_rs256_with_public_key_pem(rsa_key: Any) -> None:
    verifier = TokenVerifier(TokenConfig(rsa_public_key=public_pem(rsa_key)))
    for alg in ("RS256", "RS384", "RS512"):
        assert verifier.verify_connect(make_token("", "r", algorithm=alg, key=rsa_key)).user == "r"


def test_es256_with_public_key_pem(ec_key: Any) -> None:
    verifier = TokenVerifier(TokenConfig(ecdsa_public_key=public_pem(ec_key)))
    assert verifier.verify_connect(make_token("", "e", algorithm="ES256", key=ec_key)).user == "e"


def test_hmac_and_rsa_together_select_by_algorithm(rsa_key: Any) -> None:
    verifier = TokenVerifier(
        TokenConfig(hmac_secret_key=SECRET, rsa_public_key=public_pem(rsa_key))
    )
    assert verifier.verify_connect(make_token(SECRET, "h")).user == "h"
    assert verifier.verify_connect(make_token("", "r", algorithm="RS256", key=rsa_key)).user == "r"


def test_jwks_file_selects_the_key_by_kid(jwks_file: Path, rsa_key: Any, ec_key: Any) -> None:
    verifier = TokenVerifier(TokenConfig(jwks_file=str(jwks_file)))
    rs = make_token("", "r", algorithm="RS256", key=rsa_key, kid="rsa-1")
    es = make_token("", "e", algorithm="ES256", key=ec_key, kid="ec-1")
    assert verifier.verify_connect(rs).user == "r"
    assert verifier.verify_connect(es).user == "e"


def test_jwks_rejects_unknown_missing_or_mismatched_kid(
    jwks_file: Path, rsa_key: Any, rsa_key2: Any, ec_key: Any
) -> None:
    verifier = TokenVerifier(TokenConfig(jwks_file=str(jwks_file)))
    invalid(verifier, make_token("", "r", algorithm="RS256", key=rsa_key, kid="nope"))
    invalid(verifier, make_token("", "r", algorithm="RS256", key=rsa_key))
    invalid(verifier, make_token("", "r", algorithm="RS256", key=rsa_key2, kid="rsa-1"))
    # The EC key only verifies ES256, whatever the token claims.
    _, payload, sig = make_token("", "e", algorithm="ES256", key=ec_key, kid="ec-1").split(".")
    relabelled = f"{b64url({'alg': 'ES384', 'kid': 'ec-1'})}.{payload}.{sig}"
    assert "does not fit the key" in str(invalid(verifier, relabelled))
    invalid(verifier, make_token(SECRET, "h", kid="rsa-1"))


def test_jwks_file_problems_are_config_errors(tmp_path: Path, rsa_key: Any) -> None:
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key))
    private["kid"] = "p"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keys": [private]}))
    with pytest.raises(ConfigError, match="private key material"):
        TokenVerifier(TokenConfig(jwks_file=str(bad)))
    with pytest.raises(ConfigError, match="not found"):
        TokenVerifier(TokenConfig(jwks_file=str(tmp_path / "missing.json")))


# --- rejected tokens ---------------------------------------------------------------------------


def test_alg_none_is_rejected(hs: TokenVerifier) -> None:
    token = b64url({"alg": "none", "typ": "JWT"}) + "." + b64url({"sub": "42"}) + "."
    assert "not enabled" in str(invalid(hs, token))


def test_wrong_secret_and_tampered_payload_are_rejected(hs: TokenVerifier) -> None:
    invalid(hs, make_token(OTHER_SECRET, "42"))
    header, _, signature = make_token(SECRET, "42").split(".")
    invalid(hs, f"{header}.{b64url({'sub': 'admin'})}.{signature}")


def test_algorithm_must_match_the_configured_key_type(rsa_key: Any, ec_key: Any) -> None:
    hs_only = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    invalid(hs_only, make_token("", "r", algorithm="RS256", key=rsa_key))
    rs_only = TokenVerifier(TokenConfig(rsa_public_key=public_pem(rsa_key)))
    invalid(rs_only, make_token("", "e", algorithm="ES256", key=ec_key))
    # Classic confusion: HS256 signed with the public RSA key as the "secret".
    header = b64url({"alg": "HS256", "typ": "JWT"})
    payload = b64url({"sub": "admin"})
    sig = hmac.new(public_pem(rsa_key).encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(sig.digest()).rstrip(b'=').decode()}"
    assert "not enabled" in str(invalid(rs_only, token))


def test_expired_token_is_flagged_expired(hs: TokenVerifier) -> None:
    token = make_token(SECRET, "42", claims={"exp": int(time.time()) - 10})
    with pytest.raises(TokenError) as info:
        hs.verify_connect(token)
    assert info.value.expired is True


def test_expiry_uses_the_injected_clock() -> None:
    now = [1_000_000.0]
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET), clock=lambda: now[0])
    token = make_token(SECRET, "u", claims={"exp": 1_000_010, "iat": 1_000_000})
    assert verifier.verify_connect(token).expire_at == 1_000_010
    now[0] = 1_000_010.0
    with pytest.raises(TokenError) as info:
        verifier.verify_connect(token)
    assert info.value.expired


def test_not_yet_valid_token_counts_as_expired_like_upstream(hs: TokenVerifier) -> None:
    with pytest.raises(TokenError) as info:
        hs.verify_connect(make_token(SECRET, "u", claims={"nbf": int(time.time()) + 600}))
    assert info.value.expired


def test_expired_token_with_bad_signature_is_invalid_not_expired(hs: TokenVerifier) -> None:
    invalid(hs, make_token(OTHER_SECRET, "42", claims={"exp": int(time.time()) - 10}))


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.!!!.sig", None, 42, b"x.y.z"]
)
def test_malformed_tokens_are_token_errors(hs: TokenVerifier, token: Any) -> None:
    invalid(hs, token)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"channel": "chat:1"}, "must not have a channel claim"),
        ({"exp": "tomorrow"}, "exp must be a number"),
        ({"exp": True}, "exp must be a number"),
        ({"channels": "news"}, "channels must be a list"),
        ({"channels": [1]}, "channels must be a list"),
        ({"subs": ["a"]}, "subs must map"),
        ({"meta": [1]}, "meta must be an object"),
        ({"sub": 42}, "sub must be a string"),
        ({"b64info": "%%%"}, "not valid base64"),
        ({"expire_at": "never"}, "expire_at must be a number"),
    ],
)
def test_malformed_claims_are_invalid(
    hs: TokenVerifier, claims: dict[str, Any], reason: str
) -> None:
    assert reason in str(invalid(hs, make_token(SECRET, "u", claims=claims)))


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET, audience="chorus", issuer="app"))
    good = {"aud": "chorus", "iss": "app"}
    assert verifier.verify_connect(make_token(SECRET, "u", claims=good)).user == "u"
    listed = {"aud": ["other", "chorus"], "iss": "app"}
    assert verifier.verify_connect(make_token(SECRET, "u", claims=listed)).user == "u"
    assert "audience" in str(invalid(verifier, make_token(SECRET, "u", claims={"iss": "app"})))
    assert "issuer" in str(invalid(verifier, make_token(SECRET, "u", claims={"aud": "chorus"})))
    expired_wrong_aud = {"aud": "x", "iss": "app", "exp": int(time.time()) - 5}
    invalid(verifier, make_token(SECRET, "u", claims=expired_wrong_aud))


def test_no_keys_rejects_everything() -> None:
    verifier = TokenVerifier(TokenConfig())
    invalid(verifier, make_token(SECRET, "u"))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=40).map(lambda b: b.hex())))
def test_arbitrary_input_only_ever_raises_token_error(text: str) -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    for candidate in (text, f"{text}.{text}.{text}", f"eyJhbGciOiJIUzI1NiJ9.{text}.x"):
        with pytest.raises(TokenError):
            verifier.verify_connect(candidate)
        with pytest.raises(TokenError):
            verifier.verify_subscribe(candidate)


# --- subscription tokens -----------------------------------------------------------------------


def test_subscription_token_falls_back_to_connection_key(hs: TokenVerifier) -> None:
    raw = base64.b64encode(b"\x01").decode()
    token = make_token(
        SECRET,
        "42",
        channel="$chat:1",
        ttl=60,
        info={"role": "mod"},
        claims={"client": "c1", "b64data": raw, "override": {"presence": {"value": True}}},
    )
    st_ = hs.verify_subscribe(token, channel="$chat:1", client="c1")
    assert (st_.user, st_.channel, st_.client) == ("42", "$chat:1", "c1")
    assert st_.info == b'{"role":"mod"}' and st_.data == b"\x01"
    assert st_.override == {"presence": {"value": True}}
    assert st_.expire_at is not None


def test_subscription_token_needs_a_channel_claim_and_matching_channel(hs: TokenVerifier) -> None:
    assert "needs a channel claim" in str(invalid(hs, make_token(SECRET, "u"), subscribe=True))
    token = make_token(SECRET, "u", channel="a:1")
    with pytest.raises(TokenError, match="channel mismatch"):
        hs.verify_subscribe(token, channel="a:2")
    with pytest.raises(TokenError, match="client mismatch"):
        hs.verify_subscribe(
            make_token(SECRET, "u", channel="a:1", claims={"client": "x"}), client="y"
        )
    assert hs.verify_subscribe(token, client="any").channel == "a:1"  # no client claim: any


def test_expired_subscription_token_is_flagged(hs: TokenVerifier) -> None:
    token = make_token(SECRET, "u", channel="a:1", claims={"exp": int(time.time()) - 1})
    with pytest.raises(TokenError) as info:
        hs.verify_subscribe(token)
    assert info.value.expired


def test_enabled_subscription_token_config_uses_its_own_key(ec_key: Any) -> None:
    verifier = TokenVerifier(
        TokenConfig(hmac_secret_key=SECRET),
        SubscriptionTokenConfig(enabled=True, ecdsa_public_key=public_pem(ec_key), audience="subs"),
    )
    sub_token = make_token(
        "", "u", channel="c", algorithm="ES256", key=ec_key, claims={"aud": "subs"}
    )
    assert verifier.verify_subscribe(sub_token).channel == "c"
    invalid(verifier, make_token(SECRET, "u", channel="c"), subscribe=True)  # connection key
    invalid(verifier, make_token("", "u", algorithm="ES256", key=ec_key))  # sub key, connect


def test_disabled_subscription_token_config_is_ignored() -> None:
    verifier = TokenVerifier(
        TokenConfig(hmac_secret_key=SECRET), SubscriptionTokenConfig(hmac_secret_key=OTHER_SECRET)
    )
    assert verifier.verify_subscribe(make_token(SECRET, "u", channel="c")).channel == "c"
    invalid(verifier, make_token(OTHER_SECRET, "u", channel="c"), subscribe=True)


def test_a_short_hmac_key_is_reported_once_at_start_not_per_token() -> None:
    """PyJWT warns on stderr for every token verified with a key shorter than the hash;
    Chorus says it once, as a config warning naming the key, and verifies quietly."""
    import subprocess
    import sys

    from broker.config import config_from_mapping
    from broker.config.checks import config_warnings

    config = config_from_mapping({"client": {"token": {"hmac_secret_key": "short"}},
                                  "http_api": {"insecure": True}})
    said = [w for w in config_warnings(config) if "hmac_secret_key" in w]
    assert len(said) == 1 and "client.token.hmac_secret_key: 5 bytes" in said[0]
    script = (
        "from broker.auth import TokenVerifier, make_token\n"
        "from broker.config import TokenConfig, SubscriptionTokenConfig\n"
        "v = TokenVerifier(TokenConfig(hmac_secret_key='short'), SubscriptionTokenConfig())\n"
        "for i in range(200):\n"
        "    v.verify_connect(make_token('short', f'u{i}'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("kind", ["hmac", "rsa", "ecdsa", "jwks"])
def test_each_subscription_token_key_verifies_subscription_tokens_only(
        kind: str, rsa_key: Any, ec_key: Any, jwks_file: Path) -> None:
    """With ``client.subscription_token.enabled``, each of its key options verifies
    subscription tokens (and only those: connection tokens keep ``client.token``), and
    its own ``audience`` and ``issuer`` are required of them."""
    keys: dict[str, dict[str, str]] = {
        "hmac": {"hmac_secret_key": OTHER_SECRET}, "rsa": {"rsa_public_key": public_pem(rsa_key)},
        "ecdsa": {"ecdsa_public_key": public_pem(ec_key)}, "jwks": {"jwks_file": str(jwks_file)}}
    signers: dict[str, dict[str, Any]] = {
        "hmac": {"secret": OTHER_SECRET}, "rsa": {"algorithm": "RS256", "key": rsa_key},
        "ecdsa": {"algorithm": "ES256", "key": ec_key},
        "jwks": {"algorithm": "RS256", "key": rsa_key, "kid": "rsa-1"}}
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET), SubscriptionTokenConfig(
        enabled=True, audience="subs", issuer="backend", **keys[kind]))
    sign = signers[kind]

    def token(claims: dict[str, Any], *, channel: str | None = "c") -> str:
        return make_token(sign.get("secret", ""), "u", channel=channel, claims=claims,
                          algorithm=sign.get("algorithm", "HS256"), key=sign.get("key"),
                          kid=sign.get("kid"))

    both = {"aud": "subs", "iss": "backend"}
    assert verifier.verify_subscribe(token(both)).channel == "c"
    assert "audience" in str(invalid(verifier, token({"iss": "backend"}), subscribe=True))
    assert "issuer" in str(invalid(verifier, token({"aud": "subs"}), subscribe=True))
    invalid(verifier, make_token(SECRET, "u", channel="c", claims=both), subscribe=True)
    invalid(verifier, token(both, channel=None))  # the subscription key cannot connect
