"""A Centrifugo v6 configuration starts Chorus unchanged: the environment that the
official centrifuge-python SDK gives Centrifugo in its own test setup (its
docker-compose.yml), translated key by key into ``CENTRIFUGO_*`` variables, and the
equivalent JSON file. Keys for features Chorus lacks are still refused by name."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from centrifuge import DeltaType

from broker.auth import make_token
from broker.config import ConfigError, load_config
from broker.connection.outbox import Outbox
from broker.protocol import JSON_CODEC, PROTOBUF_CODEC
from tests.functional.conftest import (
    WAIT,
    free_port,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)

SDK_SECRET = "secret"  # the compose file's HMAC key (short: PyJWT warns, we know)
pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is .* bytes long")

# centrifuge-python's docker-compose.yml (the Centrifugo v6 its tests run against), one
# variable per line as it sets them.
COMPOSE_ENV = {
    "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": SDK_SECRET,
    "CENTRIFUGO_LOG_LEVEL": "trace",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_ALLOWED_DELTA_TYPES": "fossil",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_DELTA_PUBLISH": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_JOIN_LEAVE": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_FORCE_PUSH_JOIN_LEAVE": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE": "100",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL": "300s",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_FORCE_RECOVERY": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_ALLOW_PUBLISH_FOR_SUBSCRIBER": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_ALLOW_PRESENCE_FOR_SUBSCRIBER": "true",
    "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_ALLOW_HISTORY_FOR_SUBSCRIBER": "true",
    "CENTRIFUGO_CLIENT_SUBSCRIBE_TO_USER_PERSONAL_CHANNEL_ENABLED": "true",
    "CENTRIFUGO_CHANNEL_NAMESPACES": "smallhistory",
    "CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_FORCE_RECOVERY": "true",
    "CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE": "2",
    "CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_TTL": "300s",
    "CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_ALLOW_PUBLISH_FOR_SUBSCRIBER": "true",
    "CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_ALLOW_HISTORY_FOR_SUBSCRIBER": "true",
}

# The same configuration as a Centrifugo v6 JSON file.
COMPOSE_JSON: dict[str, Any] = {
    "client": {
        "token": {"hmac_secret_key": SDK_SECRET},
        "subscribe_to_user_personal_channel": {"enabled": True},
    },
    "log": {"level": "trace"},
    "channel": {
        "without_namespace": {
            "allowed_delta_types": ["fossil"], "delta_publish": True, "presence": True,
            "join_leave": True, "force_push_join_leave": True, "history_size": 100,
            "history_ttl": "300s", "force_recovery": True,
            "allow_publish_for_subscriber": True, "allow_presence_for_subscriber": True,
            "allow_history_for_subscriber": True,
        },
        "namespaces": [{
            "name": "smallhistory", "force_recovery": True, "history_size": 2,
            "history_ttl": "300s", "allow_publish_for_subscriber": True,
            "allow_history_for_subscriber": True,
        }],
    },
}


@pytest.fixture
def compose_json(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(COMPOSE_JSON))
    return path


def test_the_environment_and_the_json_file_give_the_same_config(compose_json: Path) -> None:
    from_env = load_config(env=COMPOSE_ENV)
    assert from_env == load_config(compose_json, env={})
    # Each variable landed on its key (spot checks of every kind: list, bool, int,
    # duration, a namespace declared by name and its options).
    assert from_env.client.token.hmac_secret_key == SDK_SECRET
    plain = from_env.channel.without_namespace
    assert plain.allowed_delta_types == ("fossil",) and plain.delta_publish
    assert (plain.history_size, plain.history_ttl) == (100, 300.0)
    small = from_env.channel_options("smallhistory:x")
    assert small is not None and (small.history_size, small.force_recovery) == (2, True)
    # The CHORUS_ spelling of the same environment is the same config.
    chorus_env = {"CHORUS_" + k.removeprefix("CENTRIFUGO_"): v for k, v in COMPOSE_ENV.items()}
    assert load_config(env=chorus_env) == from_env


def test_chorus_prefix_wins_over_centrifugo_and_says_so(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    env = {**COMPOSE_ENV, "CHORUS_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE": "5"}
    with caplog.at_level(logging.WARNING, logger="chorus.config"):
        config = load_config(env=env)
    small = config.channel_options("smallhistory:x")
    assert small is not None and small.history_size == 5
    [record] = [r for r in caplog.records if r.name == "chorus.config"]
    message = record.getMessage()
    assert "CHORUS_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE wins" in message
    assert "CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE" in message


@pytest.mark.parametrize(("variable", "message"), [
    ("CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_SUBSCRIBE_STREAM_PROXY_ENABLED",
     "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_SUBSCRIBE_STREAM_PROXY_ENABLED: environment variable "
     "matches no config key"),
    ("CENTRIFUGO_GRPC_API_ENABLED",
     "CENTRIFUGO_GRPC_API_ENABLED: environment variable matches no config key"),
    ("CENTRIFUGO_CHANNEL_NAMESPACES_SMALLHISTORY_SUBSCRIBE_STREAM_PROXY_ENABLED",
     "namespace 'smallhistory' has no option SUBSCRIBE_STREAM_PROXY_ENABLED"),
    ("CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZ",
     "(did you mean CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE?)"),
])
def test_features_chorus_lacks_are_refused_by_name(variable: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(env={**COMPOSE_ENV, variable: "true"})
    assert message in str(error.value)


def test_not_configuration_is_left_alone() -> None:
    """Kubernetes service links of a Service named "centrifugo" and Centrifugo's
    interpolation variables are not keys."""
    env = {**COMPOSE_ENV, "CENTRIFUGO_SERVICE_HOST": "10.0.0.1",
           "CENTRIFUGO_PORT_8000_TCP_ADDR": "10.0.0.1", "CENTRIFUGO_VAR_TENANT": "x"}
    assert load_config(env=env) == load_config(env=COMPOSE_ENV)


def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every publication pushed to any outbox, decoded."""
    seen: list[dict[str, Any]] = []
    original = Outbox.push

    def push(self: Outbox, frame: bytes, *args: Any, **kwargs: Any) -> Any:
        for reply in (PROTOBUF_CODEC if self.binary else JSON_CODEC).decode_replies(frame):
            if "pub" in reply.get("push", {}):
                seen.append(reply["push"]["pub"])
        return original(self, frame, *args, **kwargs)

    monkeypatch.setattr(Outbox, "push", push)
    return seen


async def test_the_sdk_works_against_the_compose_environment(
        protobuf: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the SDK's own tests do with that Centrifugo: a personal channel subscribed
    on connect, a subscription token (that config lets no client subscribe without
    one), presence and join/leave, client publications sent as fossil deltas
    (``delta_publish``), history."""
    wire = published(monkeypatch)
    document = {"levels": [[i, i * 2] for i in range(40)], "n": 0}
    async with run_node(load_config(env=COMPOSE_ENV)) as node:
        token = make_token(SDK_SECRET, "alice")
        async with sdk_client(node, protobuf=protobuf, token=token) as sdk:
            personal = await next_event(sdk.events.subscribed)
            assert personal.channel == "#alice"
            sub, events = await sdk.subscribe(
                "prices", delta=DeltaType.FOSSIL,
                token=make_token(SDK_SECRET, "alice", channel="prices"))
            assert (await next_event(events.joins)).user == "alice"
            for n in (1, 2, 3):
                await sub.publish(sdk.payload({**document, "n": n}))
            got = [sdk.value((await next_event(events.publications)).data) for _ in range(3)]
            assert [item["n"] for item in got] == [1, 2, 3] and got[2] == {**document, "n": 3}
            assert [bool(p.get("delta")) for p in wire] == [False, True, True]
            presence = await sub.presence()
            assert [info.user for info in presence.clients.values()] == ["alice"]
            history = await sub.history(limit=10)
            assert [p.offset for p in history.publications] == [1, 2, 3]


@pytest.fixture
def served(compose_json: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``chorus serve`` (the real CLI) given only the compose environment, on a free
    loopback port (the compose file would take 8000)."""
    port = free_port()
    env = {key: os.environ[key] for key in ("PATH", "HOME", "PYTHONPATH") if key in os.environ}
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warn"], env={**env, **COMPOSE_ENV}, stderr=subprocess.PIPE)
    try:
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_chorus_serve_starts_from_the_compose_environment(
        served: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = served
    async with ClientSession() as session:
        async def ready() -> bool:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                    return response.status == 200
            except OSError:
                return False

        await wait_until(ready, "the node to be ready", timeout=15)
        # No http_api.key in that environment: as Centrifugo, the API refuses every call.
        async with session.post(f"http://127.0.0.1:{port}/api/info", json={}) as response:
            assert response.status == 401
            assert "http_api.key is not set" in (await response.json())["error"]["message"]
        async with session.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket") as ws:
            await ws.send_str(json.dumps({"id": 1, "connect": {
                "token": make_token(SDK_SECRET, "bob")}}))
            reply = json.loads(await ws.receive_str(timeout=WAIT))
            assert reply["connect"]["subs"].keys() == {"#bob"}
    process.terminate()
    await asyncio.get_running_loop().run_in_executor(None, process.wait, 10)
