"""deploy/ for real: the image built from deploy/Dockerfile, the shipped compose stack up
(3 nodes, nginx, Redis primary + replica, 3 Sentinels, Prometheus), proven end to end.

Base images come from local stand-ins (tests/deploy/standins.py: debootstrap + Debian's
packages; no registry is reachable), tagged with the names deploy/ uses. The stack runs
from deploy/compose.yaml unchanged under tests/deploy/compose.test.yaml (loopback ports,
this machine's open-file limit, Grafana left out: see that file for why). All traffic
goes to 127.0.0.1 ports the override publishes. The figures (image size, time to ready,
failover ledger) go to CACHE/report.json; ``scripts/deploy-test`` prints them.

One command runs it all on a fresh machine: ``scripts/deploy-test``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.composestack import NODES, PROJECT, Stack, volumes
from tests.deploy.dockerhost import CACHE, DockerCannotRun, docker, docker_daemon
from tests.deploy.failover import run_failover
from tests.deploy.standins import build_standins

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1800)]

IMAGE = "chorus:0.1.0"
REPORT: dict[str, Any] = {}


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """A Docker engine (started here if none runs); skips only if dockerd cannot run."""
    try:
        with docker_daemon():
            yield
    except DockerCannotRun as error:
        if os.environ.get("CHORUS_REQUIRE_DOCKER") == "1":  # scripts/deploy-test
            pytest.fail(f"Docker cannot run on this machine: {error}")
        pytest.skip(f"Docker cannot run on this machine: {error}")
    finally:
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "report.json").write_text(json.dumps(REPORT, indent=2) + "\n")
        print("\ndeploy report:", json.dumps(REPORT, indent=2))


@pytest.fixture(scope="module")
def stack(engine: None) -> Iterator[Stack]:
    """Stand-ins built, the Chorus image built by compose, nothing of the stack up yet."""
    started = time.monotonic()
    REPORT["base_images"] = build_standins()
    REPORT["standins_seconds"] = round(time.monotonic() - started, 1)
    run = Stack()
    run.down()  # a run interrupted before its teardown leaves nothing for this one
    REPORT["image_build_seconds"] = round(run.build(), 1)
    run.volumes_before = volumes()
    try:
        yield run
    finally:
        run.down()


@pytest.fixture(scope="module")
def running(stack: Stack) -> Stack:
    REPORT["compose_up_to_every_node_ready_seconds"] = round(stack.up(), 1)
    return stack


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"X-API-Key": key,
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
        return answer


def _health(container: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()


def test_image_runs_as_its_non_root_user_and_its_healthcheck_turns_healthy(
        stack: Stack) -> None:
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    REPORT["image_size_mb"] = round(size / 1e6, 1)
    assert docker("image", "inspect", "--format", "{{.Config.User}}",
                  IMAGE).stdout.strip() == "10001:10001"
    # The image alone, with its baked-in config (memory engine) and its own HEALTHCHECK.
    env = [arg for name in ("CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY", "CHORUS_HTTP_API_KEY")
           for arg in ("-e", f"{name}={stack.secrets[name]}")]
    name = "chorus-deploy-test-image"
    docker("rm", "-f", name, check=False)
    docker("run", "-d", "--name", name, *env, IMAGE)
    try:
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        started = time.monotonic()
        while (status := _health(name)) != "healthy":
            assert status in ("starting", ""), f"health {status}: {docker('logs', name).stderr}"
            assert time.monotonic() - started < 60, "HEALTHCHECK never turned healthy"
            time.sleep(0.5)  # docker runs the check on its own schedule: nothing to await
        REPORT["image_healthy_seconds"] = round(time.monotonic() - started, 1)
        # SIGTERM drains and exits 0 well within `docker stop -t 15`.
        stopping = time.monotonic()
        docker("stop", "-t", "15", name)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert time.monotonic() - stopping < 15
    finally:
        docker("rm", "-f", name, check=False)


def test_every_node_is_ready_behind_nginx_and_knows_the_other_two(running: Stack) -> None:
    for service in (*NODES, "nginx", "prometheus", "redis-primary", "redis-replica",
                    "sentinel-1", "sentinel-2", "sentinel-3"):
        assert _health(running.container(service)) == "healthy", service
    for index, service in enumerate(NODES):
        assert running.ready(index), service
        info = _post(f"{running.node_url(index)}/api/info", {}, running.api_key)
        assert sorted(node["name"] for node in info["result"]["nodes"]) == list(NODES)
        # The process runs as the image's user, with the soft open-file limit raised to
        # the hard one by the entrypoint (the override starts it at 1024).
        status = running.exec(service, "sh", "-c", "id -u; grep 'open files' /proc/1/limits")
        uid, limits = status.split("\n", 1)
        assert uid == "10001"
        assert limits.split()[3:5] == [str(running.nofile)] * 2, limits
    status, body = _get(f"http://127.0.0.1:{running.ports['NGINX']}/health")
    assert status == 200, body
    status, _ = _get(f"http://127.0.0.1:{running.ports['NGINX']}/metrics")
    assert status == 404  # per-node metrics are never served through the balancer


def test_prometheus_scrapes_every_node_with_the_scrape_token(running: Stack) -> None:
    token = running.secrets["CHORUS_PROMETHEUS_TOKEN"]
    for index in range(len(NODES)):
        assert _get(f"{running.node_url(index)}/metrics")[0] == 401
        assert _get(f"{running.node_url(index)}/metrics",
                    {"Authorization": f"Bearer {running.secrets['CHORUS_ADMIN_SECRET']}"}
                    )[0] == 401  # only the scrape token opens /metrics
        assert _get(f"{running.node_url(index)}/metrics",
                    {"Authorization": f"Bearer {token}"})[0] == 200
    query = f"{running.prometheus_url}/api/v1/query?query=up%7Bjob%3D%22chorus%22%7D"
    started = time.monotonic()
    while True:
        status, body = _get(query)
        results = json.loads(body)["data"]["result"] if status == 200 else []
        up = {r["metric"]["instance"]: r["value"][1] for r in results}
        if up == {f"{node}:8000": "1" for node in NODES}:
            break
        assert time.monotonic() - started < 60, f"targets: {up}"
        time.sleep(1)  # Prometheus scrapes every 5 s: nothing to await
    REPORT["prometheus_targets_up"] = sorted(up)


async def test_sdk_client_through_nginx_gets_every_acknowledged_publication_while_the_redis_primary_is_killed(  # noqa: E501
        running: Stack) -> None:
    figures = await run_failover(running)
    REPORT["failover"] = figures.as_dict()
    assert figures.problems == [], figures.line()
    assert figures.lost == 0, figures.line()
    assert figures.acknowledged_after_failover >= 40, figures.line()
    assert figures.publisher_node != figures.client_node
    assert figures.old_primary_role == "slave", figures.line()  # demoted, replicating
    assert figures.restarted_sentinel_master == "redis-replica", figures.line()


def test_down_keeps_only_the_named_volumes_and_down_v_leaves_nothing(running: Stack) -> None:
    started = time.monotonic()
    running.compose("down", "--timeout", "20", timeout=300)
    REPORT["compose_down_seconds"] = round(time.monotonic() - started, 1)
    kept = running.leftovers()
    assert kept["containers"] == [] and kept["networks"] == []
    # Data stays (Redis AOF, Prometheus TSDB); no anonymous volume is left to pile up.
    assert volumes() - running.volumes_before == set(kept["volumes"])
    assert sorted(kept["volumes"]) == [f"{PROJECT}_{name}" for name in (
        "prometheus", "redis-primary", "redis-replica")]
    running.down()  # down -v
    assert running.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert volumes() - running.volumes_before == set()
