"""The model repository extension: list the versions on disk, load one (verified, checked,
swapped in while requests keep flowing), unload a model."""

import json
import logging
from typing import Any

from app.errors import BadRequest, Conflict, VersionRefused
from app.schemas_v2 import LoadResponse, RepositoryModel, UnloadResponse
from app.services import Services
from models.checkpoint import CheckpointError

logger = logging.getLogger("app.repository")


def index(services: Services, ready_only: bool) -> list[RepositoryModel]:
    """Every version on disk, READY where it is the one served."""
    out = []
    registry = services.registry
    for name, versions in registry.on_disk().items():
        served = registry.served[name].version if name in registry.served else None
        for version in versions:
            if version == served:
                out.append(RepositoryModel(name=name, version=version, state="READY", reason=""))
            elif not ready_only:
                reason = "not loaded" if served is None else f"version {served} is served"
                out.append(
                    RepositoryModel(name=name, version=version, state="UNAVAILABLE", reason=reason)
                )
    return out


def requested_version(parameters: dict[str, Any] | None) -> str | None:
    """``version`` from a load request's parameters, or the one a Triton ``config`` names
    (``{"version_policy": {"specific": {"versions": [2]}}}``); None: the newest."""
    parameters = parameters or {}
    if "version" in parameters:
        version = parameters["version"]
        if isinstance(version, bool) or not isinstance(version, str | int):
            raise BadRequest('parameters.version must be a version name such as "2"')
        return str(version)
    if "config" not in parameters:
        return None
    try:
        config = json.loads(parameters["config"])
        versions = config["version_policy"]["specific"]["versions"]
    except (TypeError, KeyError, ValueError):
        raise BadRequest(
            'parameters.config: this server reads only {"version_policy": {"specific": '
            '{"versions": [<one version>]}}}'
        ) from None
    if not isinstance(versions, list) or len(versions) != 1:
        raise BadRequest("parameters.config: name exactly one version to serve")
    return str(versions[0])


def _single_process(services: Services) -> None:
    workers = services.settings.workers
    if workers > 1:
        raise Conflict(
            f"this server runs {workers} worker processes, each with its own models; a load or "
            "unload would reach only the one that took this request. Roll out a version by "
            "restarting (model.json names the default) or run one worker per container"
        )


async def load(services: Services, name: str, version: str | None) -> LoadResponse:
    """Load a version (default: the newest), verify its card and sha256, warm and check it on
    a probe batch, then swap it in; a version that fails any of this is refused and the served
    one keeps serving."""
    _single_process(services)
    registry = services.registry
    previous = registry.served[name].version if name in registry.served else None
    try:
        chosen, previous = await registry.load(name, version)
    except (CheckpointError, ValueError) as exc:
        _count(services, name, "refused")
        keeps = f"; version {previous} keeps serving" if previous else ""
        logger.warning("%s: refused a version: %s", name, exc)
        where = f"{registry.weights_dir}/"
        raise VersionRefused(f"{str(exc).replace(where, '')}{keeps}") from None
    _count(services, name, "loaded")
    logger.info("%s: serving version %s (was %s)", name, chosen, previous)
    return LoadResponse(name=name, version=chosen, previous_version=previous)


async def unload(services: Services, name: str) -> UnloadResponse:
    """Stop serving a model; requests already queued are answered first."""
    _single_process(services)
    version = await services.registry.unload(name)
    logger.info("%s: unloaded version %s", name, version)
    return UnloadResponse(name=name, version=version)


def _count(services: Services, name: str, outcome: str) -> None:
    if services.metrics is not None:
        services.metrics.model_loads.labels(name, outcome).inc()
