"""Token key material: PEM public keys and JWKS files, loaded once and checked loudly.

Shared by config validation (so a bad key fails at start with its key path) and by
:mod:`broker.auth` (which selects a key per token). Each key is bound to the JWT
algorithms it may verify, so a token can never pick a weaker or different algorithm
than the key type allows (no "alg: none", no HMAC-with-a-public-key confusion).

PyJWT and ``cryptography`` (slow to import) are loaded only when an RSA or ECDSA key or
a JWKS file is configured: an HMAC-only node never imports them.

Error handling: every problem raises ConfigError naming the config key path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from broker.config.parse import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class TokenKeyConfig(Protocol):
    """The key fields shared by ``client.token`` and ``client.subscription_token``."""

    @property
    def hmac_secret_key(self) -> str: ...
    @property
    def rsa_public_key(self) -> str: ...
    @property
    def ecdsa_public_key(self) -> str: ...
    @property
    def jwks_file(self) -> str: ...


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A verification key and the algorithms it may verify."""

    key: Any
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeySet:
    """Keys by JWT algorithm (static keys) or by ``kid`` (JWKS); never both."""

    by_algorithm: Mapping[str, VerifyKey] = field(default_factory=dict)
    by_kid: Mapping[str, VerifyKey] = field(default_factory=dict)


def load_keyset(cfg: TokenKeyConfig, path: str) -> KeySet:
    """Load every key configured in ``cfg`` (at config path ``path``, e.g. client.token)."""
    if cfg.jwks_file:
        names = ("hmac_secret_key", "rsa_public_key", "ecdsa_public_key")
        others = [name for name in names if getattr(cfg, name)]
        if others:
            raise ConfigError(
                f"{path}.jwks_file: cannot be combined with {', '.join(others)} "
                "(with a JWKS every token is verified by its kid)"
            )
        return KeySet(by_kid=load_jwks_file(cfg.jwks_file, f"{path}.jwks_file"))
    by_alg: dict[str, VerifyKey] = {}
    if cfg.hmac_secret_key:
        secret = VerifyKey(cfg.hmac_secret_key.encode(), HMAC_ALGORITHMS)
        by_alg.update(dict.fromkeys(HMAC_ALGORITHMS, secret))
    if cfg.rsa_public_key:
        rsa_pub = load_rsa_public_key(cfg.rsa_public_key, f"{path}.rsa_public_key")
        rsa_key = VerifyKey(rsa_pub, RSA_ALGORITHMS)
        by_alg.update(dict.fromkeys(RSA_ALGORITHMS, rsa_key))
    if cfg.ecdsa_public_key:
        ec_key = load_ec_public_key(cfg.ecdsa_public_key, f"{path}.ecdsa_public_key")
        alg = EC_ALGORITHM_BY_CURVE[ec_key.curve.name]
        by_alg[alg] = VerifyKey(ec_key, frozenset({alg}))
    return KeySet(by_algorithm=MappingProxyType(by_alg))


def _load_public(pem: str, path: str) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.strip().encode()
    try:
        return load_pem_public_key(data)
    except ValueError:
        pass
    try:  # a certificate is accepted too: its public key is used
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        raise ConfigError(f"{path}: not a PEM public key or certificate") from None


def load_rsa_public_key(pem: str, path: str) -> rsa.RSAPublicKey:
    """Parse an RSA public key (PEM "PUBLIC KEY", "RSA PUBLIC KEY" or a certificate)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = _load_public(pem, path)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{path}: expected an RSA public key, got {type(key).__name__}")
    return key


def load_ec_public_key(pem: str, path: str) -> ec.EllipticCurvePublicKey:
    """Parse an ECDSA public key on P-256, P-384 or P-521."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _load_public(pem, path)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{path}: expected an ECDSA public key, got {type(key).__name__}")
    if key.curve.name not in EC_ALGORITHM_BY_CURVE:
        raise ConfigError(f"{path}: unsupported curve {key.curve.name} (use P-256, P-384 or P-521)")
    return key


def load_jwks_file(file: str, path: str) -> Mapping[str, VerifyKey]:
    """Read a JWKS file: RSA and EC public keys, each with a unique ``kid``."""
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file {file!r} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read JWKS file {file!r}: {exc}") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f'{path}: {file!r} has no "keys" list')
    out: dict[str, VerifyKey] = {}
    for i, jwk in enumerate(keys):
        where = f"{path}: {file!r} keys[{i}]"
        if not isinstance(jwk, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ConfigError(f'{where}: "kid" is required')
        if kid in out:
            raise ConfigError(f"{where}: duplicate kid {kid!r}")
        out[kid] = _jwk_to_key(jwk, where)
    return MappingProxyType(out)


def _jwk_to_key(jwk: dict[str, Any], where: str) -> VerifyKey:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    kty = jwk.get("kty")
    if kty not in ("RSA", "EC"):
        raise ConfigError(f"{where}: kty must be RSA or EC, got {kty!r}")
    if "d" in jwk:
        raise ConfigError(f"{where}: contains private key material; publish only public keys")
    if jwk.get("use", "sig") != "sig":
        raise ConfigError(f'{where}: use must be "sig", got {jwk.get("use")!r}')
    try:
        key = jwt.PyJWK(jwk).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: invalid key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        allowed = RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHM_BY_CURVE:
        allowed = frozenset({EC_ALGORITHM_BY_CURVE[key.curve.name]})
    else:
        raise ConfigError(f"{where}: unsupported key type {type(key).__name__}")
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in allowed:
            raise ConfigError(f"{where}: alg {alg!r} does not fit a {kty} key")
        allowed = frozenset({alg})
    return VerifyKey(key, allowed)
