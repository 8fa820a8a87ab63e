"""Model card routes."""

from typing import Any

from fastapi import APIRouter

from app.api.deps import ServicesDep
from app.api.responses import problems
from app.schemas import ModelInfo, ModelList

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelList, responses=problems(503))
async def list_models(services: ServicesDep) -> dict[str, Any]:
    """Every served model's card: metrics, data checksums, parameters and device."""
    return {"models": services.cards()}


@router.get("/{name}", response_model=ModelInfo, responses=problems(404, 503))
async def get_model(name: str, services: ServicesDep) -> dict[str, Any]:
    """One model's card."""
    return services.card(name)
