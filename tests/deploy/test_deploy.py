"""The container recipe and the Kubernetes manifests: linted, validated and consistent."""

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.memory import ALLOCATOR_ENV
from app.settings import Settings
from deploy.container_check import local_install_args, parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__file__).parents[2] / ".venv/bin/hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
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


def test_install_steps_pin_torch_and_leave_out_dev_extras() -> None:
    installs = parse_dockerfile().installs
    assert installs[0][-1] == "torch==2.13.0"
    assert installs[-1][-1] == "."
    for args in installs:
        assert "-c" in args and "constraints.txt" in args
        assert not any("[dev]" in a for a in args)
    assert "--index-url" not in local_install_args(installs[0])


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    if path.name == "kustomization.yaml":
        resources = yaml.safe_load(path.read_text())["resources"]
        assert sorted(resources) == sorted(p.name for p in MANIFESTS if p != path)
        return
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_deployment_runs_locked_down_with_all_three_probes() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
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
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
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
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    k8s_env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("MALLOC_")}
    image_env = {k: v for k, v in parse_dockerfile().env.items() if k.startswith("MALLOC_")}
    assert make_env == k8s_env == image_env == ALLOCATOR_ENV
    assert "$(MALLOC_ENV)" in makefile.split("\nserve:", 1)[1].split("\n\n", 1)[0]
