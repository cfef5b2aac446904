"""Fixtures running the contract suite against every engine.

``ENGINES`` is the registry: engine name -> EngineKind (an async factory and whether
several instances form one cluster). Adding an engine is one entry. Each factory gets
``namespace`` (unique per test, shared by every node the test makes, so nodes made in
one test are nodes of one cluster) and the options a test passes to ``make_node``;
the options every engine must accept are ``history_meta_ttl: float``.

Redis always runs against a real ``redis-server`` started on a free port for the
session (``redis_url``); it is skipped with a reason when the binary or the
``broker.engine.redis`` module is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.engine.base import Engine
from broker.engine.memory import MemoryEngine
from tests.contract.helpers import Recorder
from tests.redis_server import RedisUnavailable, redis_server

Factory = Callable[[pytest.FixtureRequest, str, dict[str, Any]], Awaitable[Engine]]


@dataclass(frozen=True)
class EngineKind:
    factory: Factory
    multi_node: bool  # several instances share channels (tests of the remote leg run)
    marks: tuple[pytest.MarkDecorator, ...] = ()  # e.g. pytest.mark.redis, for -m selection


async def _memory(
    request: pytest.FixtureRequest, namespace: str, options: dict[str, Any]
) -> Engine:
    return MemoryEngine(**options)


async def _redis(request: pytest.FixtureRequest, namespace: str, options: dict[str, Any]) -> Engine:
    if importlib.util.find_spec("broker.engine.redis") is None:
        pytest.skip("broker.engine.redis does not exist yet (RedisEngine is a later issue)")
    url: str = request.getfixturevalue("redis_url")
    module = importlib.import_module("broker.engine.redis")
    # The Redis issue owns this line: adapt it to RedisEngine's real constructor.
    engine: Engine = module.RedisEngine(url, prefix=f"chorus-test-{namespace}", **options)
    return engine


ENGINES: dict[str, EngineKind] = {
    "memory": EngineKind(_memory, multi_node=False),
    "redis": EngineKind(_redis, multi_node=True, marks=(pytest.mark.redis,)),
}


@dataclass(frozen=True)
class Node:
    """One engine instance as a node sees it: the engine and what it delivered."""

    engine: Engine
    received: Recorder


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server for the session (never the shared one on 6379)."""
    try:
        with redis_server() as server:
            yield server.url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=[pytest.param(name, marks=kind.marks) for name, kind in ENGINES.items()])
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_node(request: pytest.FixtureRequest, engine_kind: str) -> AsyncIterator[MakeNode]:
    """An async factory of started nodes of one cluster; all are closed at teardown."""
    kind = ENGINES[engine_kind]
    namespace = uuid.uuid4().hex[:12]
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        engine = await kind.factory(request, namespace, options)
        received = Recorder()
        engine.set_handlers(
            received.on_publication, received.on_control, received.on_join, received.on_leave
        )
        await engine.start()
        node = Node(engine, received)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.engine.close()


@pytest.fixture
def multi_node(engine_kind: str) -> None:
    """Skip the test for engines that are a single node by design."""
    if not ENGINES[engine_kind].multi_node:
        pytest.skip(f"{engine_kind} engine is single-node: there is no remote leg")


@pytest.fixture
async def node(make_node: MakeNode) -> Node:
    return await make_node()


@pytest.fixture
async def engine(node: Node) -> Engine:
    return node.engine
