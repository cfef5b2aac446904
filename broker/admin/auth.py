"""Admin authentication: the admin secret itself, or a signed, expiring console session.

Every ``/admin/api/`` route (except login) accepts ``Authorization: Bearer <token>``
where the token is either ``admin.secret`` (for scripts) or a session token from
``POST /admin/api/login`` with ``admin.password`` (for the console). A session token is
``<expiry>.<nonce>.<signature>``, the signature an HMAC-SHA256 of expiry and nonce under
``admin.secret``: the server stores no sessions, and rotating the secret ends all of them.
Every comparison is constant-time. ``admin.insecure`` turns all checks off.

Error handling: ``session_valid`` returns False for anything malformed, forged or
expired; it never raises.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SESSION_TTL = 8 * 3600.0  # seconds a console login lasts


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def issue_session(secret: str, *, now: float | None = None, ttl: float = SESSION_TTL) -> str:
    """A session token valid for ``ttl`` seconds from ``now``."""
    expires = int((time.time() if now is None else now) + ttl)
    payload = f"{expires}.{secrets.token_hex(8)}"
    return f"{payload}.{_sign(secret, payload)}"


def session_expiry(token: str) -> float:
    """The expiry (unix seconds) written in a token; 0 if malformed. Not a validity check."""
    head = token.split(".", 1)[0]
    return float(head) if head.isdigit() else 0.0


def session_valid(secret: str, token: str, *, now: float | None = None) -> bool:
    """True for a well-formed, correctly signed, unexpired session token."""
    if not secret:
        return False
    payload, _, signature = token.rpartition(".")
    if not payload or not hmac.compare_digest(signature.encode(), _sign(secret, payload).encode()):
        return False
    return session_expiry(token) > (time.time() if now is None else now)


def password_matches(expected: str, given: str) -> bool:
    """Constant-time password check; an empty configured password matches nothing."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ""."""
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


def authorized(secret: str, token: str) -> bool:
    """The admin secret itself (constant-time) or a valid session token."""
    if not secret or not token:
        return False
    return hmac.compare_digest(token.encode(), secret.encode()) or session_valid(secret, token)
