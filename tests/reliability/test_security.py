"""Security basics: constant-time secret checks, secrets never logged, the Origin check
on the WebSocket endpoint, and TLS on ``chorus serve``."""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import json
import logging
import ssl
from pathlib import Path

import jwt
import pytest
from aiohttp import (
    ClientConnectorCertificateError,
    ClientError,
    ClientSession,
    WSServerHandshakeError,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.auth import make_token
from tests.functional.conftest import API_KEY, SECRET, WAIT, base_config, run_node
from tests.reliability.helpers import command, json_client, serve

ADMIN_SECRET = "admin-secret-for-tests-42"
ADMIN_PASSWORD = "admin-password-for-tests-42"
SCRAPE_TOKEN = "prometheus-token-for-tests-42"


def secure_config(**extra: object) -> dict[str, object]:
    return base_config(admin={"enabled": True, "secret": ADMIN_SECRET,
                              "password": ADMIN_PASSWORD},
                       prometheus={"token": SCRAPE_TOKEN}, **extra)


async def test_api_key_admin_secret_and_scrape_token_use_compare_digest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every secret check goes through ``hmac.compare_digest`` with the configured secret
    (a timing-safe comparison), and answers right and wrong values correctly."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with run_node(secure_config()) as node:
        base = f"http://127.0.0.1:{node.port}"
        assert (await node.api("info", {}, key="wrong-key"))[0] == 401
        assert (await node.api("info", {}))[0] == 200
        async with node.session.get(f"{base}/metrics",
                                    headers={"Authorization": "Bearer nope"}) as response:
            assert response.status == 401
        async with node.session.get(f"{base}/metrics",
                                    headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}) as r:
            assert r.status == 200
        async with node.session.get(f"{base}/admin/api/tree",
                                    headers={"Authorization": f"Bearer {ADMIN_SECRET}"}) as r:
            assert r.status == 200
    secrets_seen = {value for pair in compared for value in pair}
    assert API_KEY.encode() in secrets_seen
    assert ADMIN_SECRET.encode() in secrets_seen
    assert SCRAPE_TOKEN.encode() in secrets_seen
    assert b"wrong-key" in secrets_seen and b"nope" in secrets_seen


async def test_secrets_never_appear_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Failed and successful authentication of every kind, at DEBUG: no secret, password
    or token value is ever in a log record."""
    caplog.set_level(logging.DEBUG)
    good = make_token(SECRET, "alice")
    forged = make_token("not-the-secret-0123456789abcdef0123", "mallory")
    unsigned = jwt.encode({"sub": "mallory"}, key="", algorithm="none")
    async with run_node(secure_config()) as node:
        base = f"http://127.0.0.1:{node.port}"
        await node.api("info", {}, key="guess-" + API_KEY[:4])
        await node.api("info", {})
        for password in (ADMIN_PASSWORD, "wrong-password"):
            async with node.session.post(f"{base}/admin/api/login",
                                         json={"password": password}) as response:
                await response.read()
        for token in (good, forged, unsigned):
            async with json_client(node, connect=False) as ws:
                await ws.send_json({"id": 1, "connect": {"token": token}})
                await ws.receive(timeout=WAIT)
        async with json_client(node) as ws:  # a bad subscription token, answered 103
            reply = await command(ws, {"id": 2, "subscribe": {"channel": "$x",
                                                              "token": forged}})
            assert reply["error"]["code"] == 103
        for scrape_token in (SCRAPE_TOKEN, "wrong-" + SCRAPE_TOKEN[:4]):
            async with node.session.get(f"{base}/metrics", headers={
                    "Authorization": f"Bearer {scrape_token}"}) as response:
                await response.read()
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert caplog.records, "DEBUG logging captured nothing"
    for secret in (SECRET, API_KEY, ADMIN_SECRET, ADMIN_PASSWORD, SCRAPE_TOKEN, good, forged,
                   unsigned):
        assert secret not in text, f"secret value logged: {secret[:6]}..."


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://app.example.com", True),
    ("https://app.example.com/", True),
    ("https://evil.example.com", False),
    ("http://app.example.com", False),  # the scheme is part of the origin
    (None, True),  # no Origin: not a browser, nothing to check
])
async def test_websocket_origin_check(origin: str | None, allowed: bool) -> None:
    config = base_config(client={"allowed_origins": ["https://app.example.com"]})
    async with run_node(config) as node:
        headers = {"Origin": origin} if origin is not None else {}
        if allowed:
            async with json_client(node, headers=headers) as ws:
                assert await command(ws, {"id": 2, "ping": {}}) == {"id": 2, "ping": {}}
        else:
            with pytest.raises(WSServerHandshakeError) as refused:
                await node.session.ws_connect(node.ws_url, headers=headers)
            assert refused.value.status == 403
            assert not node.node.connections


@pytest.mark.parametrize(("origin", "allowed"), [
    ("http://127.0.0.1:{port}", True),  # the page was served by this node
    ("https://127.0.0.1:{port}", True),  # the scheme is not compared (Centrifugo's rule)
    ("http://LOCALHOST.example:{port}", False),
    ("http://127.0.0.1:1", False),  # another port is another origin
    ("http://127.0.0.1", False),
    ("https://evil.example.com", False),
    ("null", False),  # sandboxed frames, file: pages
    (None, True),  # no Origin: a non-browser client (the Node and Python SDKs)
])
async def test_without_allowed_origins_browsers_are_held_to_the_same_origin(
        origin: str | None, allowed: bool) -> None:
    async with run_node(base_config()) as node:
        headers = {} if origin is None else {"Origin": origin.format(port=node.port)}
        if allowed:
            async with json_client(node, headers=headers) as ws:
                assert await command(ws, {"id": 2, "ping": {}}) == {"id": 2, "ping": {}}
        else:
            with pytest.raises(WSServerHandshakeError) as refused:
                await node.session.ws_connect(node.ws_url, headers=headers)
            assert refused.value.status == 403
            assert not node.node.connections


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.slow
async def test_chorus_serve_terminates_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))
    config = {"client": {"token": {"hmac_secret_key": SECRET}}, "http_api": {"key": API_KEY},
              "http_server": {"tls": {"enabled": True, "cert_pem_file": str(cert),
                                      "key_pem_file": str(key)}}}
    served = await serve(config, str(tmp_path), scheme="https", ssl_context=trusting,
                         log_level="info")
    try:
        async with ClientSession() as session:
            url = f"wss://127.0.0.1:{served.port}/connection/websocket"
            async with session.ws_connect(url, ssl=trusting) as ws:
                await ws.send_str(json.dumps({"id": 1, "connect": {
                    "token": make_token(SECRET, "tls-user")}}))
                reply = await ws.receive_json(timeout=WAIT)
                assert reply["connect"]["client"]
            # A client that does not trust the certificate is refused by its own TLS.
            with pytest.raises(ClientConnectorCertificateError):
                await session.get(f"https://127.0.0.1:{served.port}/health",
                                  ssl=ssl.create_default_context())
            # Plain HTTP on the TLS port is not served.
            with pytest.raises(ClientError):
                async with session.get(f"http://127.0.0.1:{served.port}/health") as plain:
                    await plain.read()
    finally:
        served.process.terminate()
        await served.process.wait()
    assert "https://" in served.output()
