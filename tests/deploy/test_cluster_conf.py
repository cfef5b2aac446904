"""The local cluster's plan and generated configs, checked without starting processes
(except ``nginx -t``, which only parses)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from broker.cli import main
from broker.config import config_from_mapping
from broker.devcluster.conf import DEFAULT_BASE_PORT, MASTER_NAME, ClusterPlan, Ports
from broker.devcluster.launcher import ClusterError, cluster_up, describe

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TAKEN_ON_THIS_MACHINE = {6379, 5432, 5672, 4222, 1883}


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.skip("nginx is not installed")
    return found


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "err.log")],
        capture_output=True, text=True, timeout=30, check=False)


def test_default_ports_are_distinct_clear_of_known_services_and_ephemeral_range() -> None:
    ports = Ports.layout(DEFAULT_BASE_PORT, 3)
    every = ports.all()
    assert len(every) == len(set(every)) == 9
    assert not set(every) & TAKEN_ON_THIS_MACHINE
    assert max(every) < 32768  # Linux's default ephemeral range starts there
    assert ports.balancer == DEFAULT_BASE_PORT and ports.nodes == (17401, 17402, 17403)


def test_base_port_zero_picks_distinct_free_ports() -> None:
    ports = Ports.layout(0, 3)
    assert len(set(ports.all())) == 9 and 0 not in ports.all()


@pytest.mark.parametrize(("base", "nodes"), [(17400, 0), (17400, 20), (80, 3), (65530, 3)])
def test_bad_layouts_are_refused_by_name(base: int, nodes: int) -> None:
    with pytest.raises(ValueError, match=r"--nodes|--base-port"):
        Ports.layout(base, nodes)


def test_every_node_config_validates_and_uses_the_sentinel_topology(tmp_path: Path) -> None:
    plan = ClusterPlan(tmp_path, Ports.layout(DEFAULT_BASE_PORT, 3))
    for index in (1, 2, 3):
        config = config_from_mapping(plan.node_config(index))
        assert config.engine.type == "redis"
        assert config.engine.redis.sentinel_master_name == MASTER_NAME
        assert config.engine.redis.sentinel_address == tuple(
            f"127.0.0.1:{p}" for p in plan.ports.sentinels)
        assert config.http_server.port == plan.ports.nodes[index - 1]
        assert config.channel.without_namespace.history_enabled  # offsets to check
        assert config.chorus.node_name == f"node-{index}"
        assert config.client.insecure is False  # tokens unless --insecure


def test_redis_configs_refuse_unreplicated_writes(tmp_path: Path) -> None:
    plan = ClusterPlan(tmp_path, Ports.layout(DEFAULT_BASE_PORT, 3))
    primary = plan.redis_conf(plan.ports.primary)
    replica = plan.redis_conf(plan.ports.replica, replica_of=plan.ports.primary)
    for conf in (primary, replica):
        assert "min-replicas-to-write 1" in conf and "bind 127.0.0.1" in conf
        assert "appendonly yes" in conf.splitlines()  # a restart keeps epochs and offsets
    assert "replicaof" not in primary
    assert f"replicaof 127.0.0.1 {plan.ports.primary}" in replica
    sentinel = plan.sentinel_conf(plan.ports.sentinels[0])
    assert f"sentinel monitor {MASTER_NAME} 127.0.0.1 {plan.ports.primary} 2" in sentinel


def test_generated_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    plan = ClusterPlan(tmp_path, Ports.layout(DEFAULT_BASE_PORT, 3))
    (tmp_path / "nginx" / "tmp").mkdir(parents=True)
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(plan.nginx_conf())
    done = nginx_test(conf, tmp_path / "nginx")
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    text = conf.read_text()
    assert "proxy_set_header Upgrade $http_upgrade" in text and "least_conn" in text
    for port in plan.ports.nodes:
        assert f"server 127.0.0.1:{port}" in text


def test_compose_nginx_conf_passes_nginx_t_with_hosts_mapped_to_loopback(
        tmp_path: Path) -> None:
    text = (DEPLOY / "nginx" / "chorus.conf").read_text()
    for name in ("chorus-1", "chorus-2", "chorus-3"):
        assert f"server {name}:8000" in text
        text = text.replace(f"{name}:8000", "127.0.0.1:8000")  # compose DNS is not here
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    done = nginx_test(conf, tmp_path)
    assert done.returncode == 0, done.stderr


def test_cluster_down_without_a_cluster_fails_cleanly(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster", "down", "--state-dir", str(tmp_path)]) == 1
    assert "nothing to stop" in capsys.readouterr().err


def test_describe_prints_endpoints_key_and_token() -> None:
    state = {
        "state_dir": "/x", "master_name": MASTER_NAME, "api_key": "KEY",
        "admin_password": "PW", "token": "TOKEN", "processes": [{}] * 9,
        "ports": {"balancer": 1, "nodes": [2, 3], "primary": 4, "replica": 5,
                  "sentinels": [6, 7, 8]},
    }
    text = describe(state)
    assert "ws://127.0.0.1:1/connection/websocket" in text
    assert "http://127.0.0.1:3" in text and "KEY" in text and "TOKEN" in text
    assert "SENTINEL FAILOVER chorus" in text


def test_up_refuses_ports_in_use_before_starting_anything(tmp_path: Path) -> None:
    nginx_binary()  # up would install what is missing: skip instead
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = Ports.layout(0, 1)
        ports = Ports(taken.getsockname()[1], ports.nodes, ports.primary, ports.replica,
                      ports.sentinels)
        with pytest.raises(ClusterError, match="ports in use"):
            cluster_up(ClusterPlan(tmp_path, ports))
    assert not (tmp_path / "state.json").exists()


def test_up_refuses_a_state_dir_with_a_running_cluster(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(ClusterError, match="cluster down"):
        cluster_up(ClusterPlan(tmp_path, Ports.layout(0, 1)))


def test_the_cli_default_base_port_is_the_launchers() -> None:
    """broker.cli declares ``cluster --base-port`` without importing broker.devcluster
    (a fast start); its default must stay the launcher's."""
    from broker.cli import CLUSTER_BASE_PORT, build_parser

    assert CLUSTER_BASE_PORT == DEFAULT_BASE_PORT
    assert build_parser().parse_args(["cluster", "status"]).base_port == DEFAULT_BASE_PORT
