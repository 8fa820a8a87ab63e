"""``kubectl apply --dry-run=client -k deploy/k8s`` as a user would run it, with no cluster.

kubectl wants an API server even for a client-side dry run: to map each kind to its resource
(discovery) and to look up what is already there. A small stand-in answers both on loopback:
discovery for the API groups and versions a 1.37 cluster serves for the kinds deployed here (a
wrong ``apiVersion`` or kind is "no matches", as on a real cluster), and "not found" for every
object. What kubectl would send is then validated against the Kubernetes 1.37 schemas, strictly.
"""

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_deploy import IMAGE, K8S, _tool

SERVED = {  # group/version -> (resource, kind, namespaced)
    "v1": [("services", "Service", True), ("namespaces", "Namespace", False)],
    "apps/v1": [("deployments", "Deployment", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
}


def _discovery(path: str) -> dict[str, Any] | None:
    groups = [gv for gv in SERVED if "/" in gv]
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": gv.split("/")[0],
                    "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                    "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                }
                for gv in groups
            ],
        }
    for gv, resources in SERVED.items():
        if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": name,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update"],
                    }
                    for name, kind, namespaced in resources
                ],
            }
    return None


class _StandIn(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = _discovery(self.path.split("?")[0])
        body = found or {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
        }
        data = json.dumps(body).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig pointing at the stand-in, which runs until the module's tests are done."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path_factory.mktemp("kube") / "config"
    cluster = {"server": f"http://127.0.0.1:{server.server_address[1]}"}
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": cluster}],
                "contexts": [
                    {"name": "stand-in", "context": {"cluster": "stand-in", "namespace": "default"}}
                ],
                "current-context": "stand-in",
                "users": [],
            }
        )
    )
    yield config
    server.shutdown()
    thread.join()
    server.server_close()


def _dry_run(kubeconfig: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [
            _tool("kubectl"),
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-k",
            str(K8S),
            "-o",
            "yaml",
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(kubeconfig.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = yaml.safe_load(result.stdout)
    items: list[dict[str, Any]] = listed["items"] if listed["kind"] == "List" else [listed]
    return items


def test_kubectl_apply_dry_run_sends_valid_consistent_objects(kubeconfig: Path) -> None:
    objects = {doc["kind"]: doc for doc in _dry_run(kubeconfig)}
    assert set(objects) == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in objects.values():
        doc["metadata"].pop("annotations", None)  # kubectl's last-applied-configuration
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "tinyzoo"
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert "replicas" not in deployment["spec"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    budget = objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert budget.items() <= labels.items()
    ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in objects["Service"]["spec"]["ports"]} <= ports
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_a_kind_the_cluster_does_not_serve_is_refused(kubeconfig: Path, tmp_path: Path) -> None:
    manifest = yaml.safe_load((K8S / "hpa.yaml").read_text())
    manifest["apiVersion"] = "autoscaling/v2beta2"  # removed in Kubernetes 1.26
    (tmp_path / "hpa.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "kustomization.yaml").write_text("resources: [hpa.yaml]\n")
    result = subprocess.run(
        [
            _tool("kubectl"),
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-k",
            str(tmp_path),
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no matches for kind" in result.stderr
