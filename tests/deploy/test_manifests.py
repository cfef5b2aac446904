"""Fast cross-checks of deploy/ against Chorus's own config loader: the Dockerfile,
compose, the Kubernetes manifests, the systemd unit and the sysctl file.

They run in seconds without Docker. The image and the compose stack are run for real by
test_compose_stack.py (slow, docker); the Kubernetes manifests are rendered by
``kubectl kustomize`` and schema-validated by test_k8s_schema.py."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.config import Config, config_from_mapping, load_config
from broker.config.env import apply_env
from broker.config.parse import parse_duration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRETS = {"CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY": "s" * 32, "CHORUS_HTTP_API_KEY": "k",
           "CHORUS_ADMIN_PASSWORD": "p", "CHORUS_ADMIN_SECRET": "a",
           "CHORUS_PROMETHEUS_TOKEN": "m"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and doc["kind"] != "Kustomization":
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def grace(text: str) -> float:
    seconds = parse_duration(text)
    assert seconds is not None, f"not a duration: {text!r}"
    return seconds


# -- Dockerfile -----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines  # type: ignore[misc]
            if line and not line.startswith("#")]


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0] and "urllib" in health[0]
    assert ("STOPSIGNAL", "SIGTERM") in steps
    cmd = [arg for op, arg in steps if op == "CMD"][-1]
    assert "--config" in cmd and "/etc/chorus/config.yaml" in cmd
    # the package itself (with the postgres extra: the outbox consumer's driver), checked
    assert any(op == "RUN" and 'pip install ".[postgres]"' in arg and "uvloop" in arg
               and "asyncpg" in arg for op, arg in steps)


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    ignore = (DEPLOY.parent / ".dockerignore").read_text().split()
    kept = {line[1:] for line in ignore if line.startswith("!")}
    for op, arg in dockerfile():
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                if source.startswith("deploy/"):
                    assert source in kept, f"{source} is excluded from the build context"


def test_image_config_validates_with_secrets_from_the_environment() -> None:
    config = load_config(DEPLOY / "chorus" / "image-config.yaml", env=SECRETS)
    assert config.http_server.port == 8000 and config.engine.type == "memory"
    assert config.prometheus.token == SECRETS["CHORUS_PROMETHEUS_TOKEN"]
    assert "CHORUS_PROMETHEUS_TOKEN" in (DEPLOY / "chorus" / "image-config.yaml").read_text()


def test_entrypoint_is_valid_sh_and_raises_the_open_file_limit() -> None:
    script = DEPLOY / "docker-entrypoint.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert "ulimit -Sn" in text and 'exec chorus "$@"' in text


# -- compose --------------------------------------------------------------------------

CHORUS_NODES = ("chorus-1", "chorus-2", "chorus-3")


def test_compose_has_every_service_with_a_healthcheck() -> None:
    services = compose()["services"]
    expected = {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3",
                *CHORUS_NODES, "nginx", "prometheus", "grafana"}
    assert set(services) == expected
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_compose_chorus_nodes_validate_and_stop_after_their_drain() -> None:
    services = compose()["services"]
    cluster = yaml.safe_load((DEPLOY / "chorus" / "cluster.yaml").read_text())
    sentinel_conf = (DEPLOY / "redis" / "sentinel.conf").read_text()
    for name in CHORUS_NODES:
        service = services[name]
        assert "./chorus/cluster.yaml:/etc/chorus/config.yaml:ro" in service["volumes"]
        env = {k: SECRETS.get(k, v) for k, v in service["environment"].items()}
        config = config_from_mapping(apply_env(cluster, env, Config))
        assert config.chorus.node_name == name
        assert config.prometheus.token == SECRETS["CHORUS_PROMETHEUS_TOKEN"]
        assert grace(service["stop_grace_period"]) > config.chorus.shutdown_timeout
        assert service["stop_signal"] == "SIGTERM"
        assert service["ulimits"]["nofile"]["soft"] >= 1048576
        hosts = {a.split(":")[0] for a in config.engine.redis.sentinel_address}
        assert hosts == {"sentinel-1", "sentinel-2", "sentinel-3"} <= set(services)
        monitor = f"sentinel monitor {config.engine.redis.sentinel_master_name} redis-primary"
        assert monitor in sentinel_conf


def test_compose_redis_replicates_and_refuses_unreplicated_writes() -> None:
    services = compose()["services"]
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1] == "redis-primary"
    for name in ("redis-primary", "redis-replica"):
        command = services[name]["command"]
        assert command[command.index("--min-replicas-to-write") + 1] == "1"


def redis_conf_lines(text: str) -> dict[str, str]:
    """A redis.conf as {directive: rest of the line}, comments left out."""
    lines = (line.strip() for line in text.splitlines())
    return dict(line.split(None, 1) for line in lines if line and not line.startswith("#"))


PERSISTENCE = ("appendonly", "appendfsync", "aof-use-rdb-preamble", "save")


def test_redis_conf_persists_with_aof() -> None:
    """History, epochs and notifications outlive a Redis restart (the behaviour is
    tests/functional/test_backup_restore.py's)."""
    conf = redis_conf_lines((DEPLOY / "redis" / "redis.conf").read_text())
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] in ("everysec", "always")
    assert "dir" not in conf  # each user of the file gives it (Redis applies it at once)


def test_compose_redis_servers_load_the_aof_config_on_their_volume() -> None:
    services = compose()["services"]
    for name in ("redis-primary", "redis-replica"):
        command, volumes = services[name]["command"], services[name]["volumes"]
        assert command[:2] == ["redis-server", "/etc/redis/redis.conf"], name
        assert "./redis/redis.conf:/etc/redis/redis.conf:ro" in volumes
        # the AOF is written to a named volume: it outlives the container
        assert command[command.index("--dir") + 1] == "/data" and f"{name}:/data" in volumes
        assert "--appendonly" not in command and "--appendfsync" not in command


def test_k8s_redis_persists_like_the_compose_redis() -> None:
    objects = k8s_objects()
    k8s = redis_conf_lines(objects[("ConfigMap", "redis-sentinel")]["data"]["redis.conf"])
    assert k8s["dir"] == "/data"
    reference = redis_conf_lines((DEPLOY / "redis" / "redis.conf").read_text())
    assert {k: k8s.get(k) for k in PERSISTENCE} == {k: reference[k] for k in PERSISTENCE}
    spec = objects[("StatefulSet", "redis")]["spec"]
    [claim] = spec["volumeClaimTemplates"]
    [redis] = [c for c in spec["template"]["spec"]["containers"] if c["name"] == "redis"]
    mounts = {m["name"]: m["mountPath"] for m in redis["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == k8s["dir"] == "/data"


def test_compose_nginx_balances_the_chorus_nodes_with_websocket_upgrade() -> None:
    nginx = compose()["services"]["nginx"]
    assert "./nginx/chorus.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    conf = (DEPLOY / "nginx" / "chorus.conf").read_text()
    blocks = re.findall(r"upstream (\w+) \{(.*?)\}", conf, re.S)
    assert [name for name, _ in blocks] == ["chorus", "chorus_clients"]  # API, connections
    for _, body in blocks:
        assert re.findall(r"server (\S+):8000", body) == list(CHORUS_NODES)
    assert "least_conn" in conf or "ip_hash" in conf
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    assert "proxy_set_header Connection $connection_upgrade" in conf


def test_compose_prometheus_scrapes_every_node_with_the_scrape_token_only() -> None:
    spec = compose()
    prometheus = spec["services"]["prometheus"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{n}:8000" for n in CHORUS_NODES]
    (secret,) = prometheus["secrets"]  # the only credential Prometheus is given
    assert spec["secrets"][secret] == {"environment": "CHORUS_PROMETHEUS_TOKEN"}
    assert job["authorization"] == {"type": "Bearer",
                                    "credentials_file": f"/run/secrets/{secret}"}
    assert "ADMIN" not in str(prometheus) and "admin" not in str(job)
    for name in CHORUS_NODES:  # the nodes expect what Prometheus sends
        token = spec["services"][name]["environment"]["CHORUS_PROMETHEUS_TOKEN"]
        assert token.startswith("${CHORUS_PROMETHEUS_TOKEN:?")
    env_example = (DEPLOY / "env.example").read_text().splitlines()
    assert "CHORUS_PROMETHEUS_TOKEN=" in env_example
    cluster = yaml.safe_load((DEPLOY / "chorus" / "cluster.yaml").read_text())
    assert cluster["prometheus"]["insecure"] is False


def test_compose_grafana_provisions_the_dashboard_and_its_datasource() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./grafana/chorus-dashboard.json"] == "/dashboards-src/chorus-dashboard.json"
    assert mounts["./grafana-provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load(
        (DEPLOY / "grafana-provisioning" / "datasources" / "prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    script = grafana["entrypoint"][-1].replace("$$", "$")
    sed = re.search(r"sed '(s/.*?/g)'", script)
    assert sed is not None
    dashboard = (DEPLOY / "grafana" / "chorus-dashboard.json").read_text()
    done = subprocess.run(["sed", sed.group(1)], input=dashboard, capture_output=True,
                          text=True, check=True)
    assert "${DS_PROMETHEUS}" in dashboard and "${DS_PROMETHEUS}" not in done.stdout
    assert f'"uid": "{uid}"' in done.stdout
    provider = yaml.safe_load(
        (DEPLOY / "grafana-provisioning" / "dashboards" / "chorus.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] in script


def test_compose_relative_mounts_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


# -- Kubernetes -----------------------------------------------------------------------


def deployment() -> dict[str, Any]:
    return k8s_objects()[("Deployment", "chorus")]


def chorus_container() -> dict[str, Any]:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def pod_secret_env() -> dict[str, str]:
    """The CHORUS_* values the pod gets from Secrets: envFrom, then env secretKeyRefs."""
    objects = k8s_objects()
    container = chorus_container()
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(objects[("Secret", source["secretRef"]["name"])]["stringData"])
    for item in container["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            env[item["name"]] = objects[("Secret", ref["name"])]["stringData"][ref["key"]]
    return env


def k8s_config() -> Config:
    objects = k8s_objects()
    mapping = yaml.safe_load(objects[("ConfigMap", "chorus-config")]["data"]["config.yaml"])
    return config_from_mapping(apply_env(mapping, pod_secret_env(), Config))


def test_configmap_config_with_the_secret_passes_chorus_validation() -> None:
    config = k8s_config()
    assert config.engine.type == "redis" and config.prometheus.insecure is False
    assert config.prometheus.token and config.prometheus.token != config.admin.secret


def test_podmonitor_sends_the_pods_scrape_token_from_its_own_secret() -> None:
    doc = yaml.safe_load((K8S / "podmonitor.yaml").read_text())
    (endpoint,) = doc["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
    credentials = endpoint["authorization"]["credentials"]
    (token_env,) = [item for item in chorus_container()["env"]
                    if item["name"] == "CHORUS_PROMETHEUS_TOKEN"]
    assert token_env["valueFrom"]["secretKeyRef"] == credentials
    objects = k8s_objects()
    scrape_secret = objects[("Secret", credentials["name"])]["stringData"]
    assert list(scrape_secret) == [credentials["key"]]  # nothing but the scrape token
    assert credentials["name"] not in {s["secretRef"]["name"]
                                       for s in chorus_container()["envFrom"]}
    assert k8s_config().prometheus.token == scrape_secret[credentials["key"]]


def test_probes_are_ready_and_health_on_the_http_port() -> None:
    container = chorus_container()
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"name": "http", "containerPort": k8s_config().http_server.port} in (
        container["ports"])


def test_prestop_sleep_and_grace_period_cover_the_drain() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    command = chorus_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    budget = float(command[1]) + k8s_config().chorus.shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] > budget


def test_pod_runs_non_root_without_service_links() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False  # CHORUS_SERVICE_HOST would stop the start
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0


def test_config_and_secret_are_wired_into_the_pod() -> None:
    objects, container = k8s_objects(), chorus_container()
    pod = deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/chorus")
    config_map = volumes[mount["name"]]["configMap"]["name"]
    assert ("ConfigMap", config_map) in objects
    assert "config.yaml" in objects[("ConfigMap", config_map)]["data"]
    assert container["args"] == ["serve", "--config", "/etc/chorus/config.yaml"]
    (source,) = container["envFrom"]
    assert ("Secret", source["secretRef"]["name"]) in objects


def test_selectors_match_the_deployment_labels() -> None:
    objects = k8s_objects()
    spec = deployment()["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pdb = objects[("PodDisruptionBudget", "chorus")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    service = objects[("Service", "chorus")]["spec"]
    assert service["selector"].items() <= labels.items()
    hpa = objects[("HorizontalPodAutoscaler", "chorus")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "chorus"}
    assert hpa["minReplicas"] >= 2 and pdb.get("maxUnavailable") == 1


def test_chorus_finds_every_sentinel_of_the_redis_recipe() -> None:
    objects = k8s_objects()
    statefulset = objects[("StatefulSet", "redis")]["spec"]
    service = statefulset["serviceName"]
    expected = {f"redis-{i}.{service}:26379" for i in range(statefulset["replicas"])}
    config = k8s_config()
    assert set(config.engine.redis.sentinel_address) == expected
    init = objects[("ConfigMap", "redis-sentinel")]["data"]
    assert f"sentinel monitor {config.engine.redis.sentinel_master_name} " in init["init.sh"]
    assert "min-replicas-to-write 1" in init["redis.conf"]
    assert subprocess.run(["sh", "-n"], input=init["init.sh"], text=True,
                          check=False).returncode == 0
    assert objects[("Service", service)]["spec"]["clusterIP"] == "None"


# -- systemd and sysctl ---------------------------------------------------------------


def test_systemd_unit_allows_a_million_files_and_stops_gracefully() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "chorus@.service")
    service = unit["Service"]
    assert service["LimitNOFILE"] == "1048576"
    assert service["KillSignal"] == "SIGTERM"
    assert grace(service["TimeoutStopSec"] + "s") > Config().chorus.shutdown_timeout
    assert shlex.split(service["ExecStart"])[1:] == ["serve", "--config", "/etc/chorus/%i.yaml"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("key", ["net.core.somaxconn", "net.ipv4.ip_local_port_range",
                                 "fs.file-max"])
def test_sysctl_file_sets_known_kernel_keys(key: str) -> None:
    settings: dict[str, str] = {}
    for line in (DEPLOY / "sysctl.d" / "99-chorus.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            settings[name.strip()] = value.strip()
    assert key in settings
    for name in settings:  # every key names a real kernel setting
        assert Path("/proc/sys", *name.split(".")).exists(), name
