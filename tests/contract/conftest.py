"""Fixtures running the contract suite against every engine.

``ENGINES`` is the registry: engine name -> EngineKind (an async factory and whether
several instances form one cluster). Adding an engine is one entry. Each factory gets
``namespace`` (unique per test, shared by every node the test makes, so nodes made in
one test are nodes of one cluster) and the options a test passes to ``make_node``;
the options every engine must accept are ``history_meta_ttl: float``.

Redis always runs against real servers started on reserved ports for the session:
``redis`` (one server, ``redis_url``), ``redis-sharded`` (client-side sharding over two
servers), ``redis-sentinel`` (primary + replica + 3 sentinels) and ``redis-cluster``
(3 primaries, sharded pub/sub); the last two are marked slow (several seconds to set
up). They are skipped with a reason when a binary or ``broker.engine.redis`` is missing.
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
from tests.contract.helpers import Recorder, start_linked
from tests.redis_server import (
    ClusterSetup,
    RedisUnavailable,
    SentinelSetup,
    cluster_setup,
    redis_server,
    sentinel_setup,
)

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


def _redis_module(request: pytest.FixtureRequest) -> Any:
    if importlib.util.find_spec("broker.engine.redis") is None:
        pytest.skip("broker.engine.redis does not exist yet (RedisEngine is a later issue)")
    return importlib.import_module("broker.engine.redis")


async def _redis(request: pytest.FixtureRequest, namespace: str, options: dict[str, Any]) -> Engine:
    module = _redis_module(request)
    url: str = request.getfixturevalue("redis_url")
    engine: Engine = module.RedisEngine(url, prefix=f"chorus-test-{namespace}", **options)
    return engine


async def _redis_sharded(
    request: pytest.FixtureRequest, namespace: str, options: dict[str, Any]
) -> Engine:
    module = _redis_module(request)
    urls: tuple[str, ...] = request.getfixturevalue("redis_shard_urls")
    engine: Engine = module.RedisEngine(urls, prefix=f"chorus-test-{namespace}", **options)
    return engine


async def _redis_sentinel(
    request: pytest.FixtureRequest, namespace: str, options: dict[str, Any]
) -> Engine:
    module = _redis_module(request)
    from broker.engine.redis_link import Sentinel, parse_address

    setup: SentinelSetup = request.getfixturevalue("redis_sentinel")
    topology = Sentinel([parse_address(a) for a in setup.sentinel_addresses], setup.service)
    engine: Engine = module.RedisEngine(
        prefix=f"chorus-test-{namespace}", topology=topology, **options
    )
    return engine


async def _redis_cluster(
    request: pytest.FixtureRequest, namespace: str, options: dict[str, Any]
) -> Engine:
    module = _redis_module(request)
    from broker.engine.redis_link import Cluster, parse_address

    setup: ClusterSetup = request.getfixturevalue("redis_cluster")
    topology = Cluster([parse_address(a) for a in setup.addresses])
    engine: Engine = module.RedisEngine(
        prefix=f"chorus-test-{namespace}", topology=topology, **options
    )
    return engine


_SLOW_REDIS = (pytest.mark.redis, pytest.mark.slow)
ENGINES: dict[str, EngineKind] = {
    "memory": EngineKind(_memory, multi_node=False),
    "redis": EngineKind(_redis, multi_node=True, marks=(pytest.mark.redis,)),
    "redis-sharded": EngineKind(_redis_sharded, multi_node=True, marks=(pytest.mark.redis,)),
    "redis-sentinel": EngineKind(_redis_sentinel, multi_node=True, marks=_SLOW_REDIS),
    "redis-cluster": EngineKind(_redis_cluster, multi_node=True, marks=_SLOW_REDIS),
}


@dataclass(frozen=True)
class Node:
    """One engine instance as a node sees it: the engine and what it delivered."""

    engine: Engine
    received: Recorder


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture(scope="session")
def redis_shard_urls() -> Iterator[tuple[str, str]]:
    """Two private redis-servers for client-side sharding."""
    try:
        with redis_server() as first, redis_server() as second:
            yield first.url, second.url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSetup]:
    """A primary, a replica and three sentinels for the session."""
    try:
        with sentinel_setup() as setup:
            yield setup
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterSetup]:
    """A 3-primary Redis Cluster for the session."""
    try:
        with cluster_setup() as setup:
            yield setup
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
    closers: list[Callable[[], Awaitable[None]]] = []

    async def make(**options: Any) -> Node:
        engine = await kind.factory(request, namespace, options)
        received = Recorder()
        engine.set_handlers(
            received.on_publication, received.on_control, received.on_join, received.on_leave
        )
        closers.append(await start_linked(engine))
        node = Node(engine, received)
        nodes.append(node)
        return node

    yield make
    for close in closers:
        await close()


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
