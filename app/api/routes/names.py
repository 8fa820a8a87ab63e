"""Surname -> country routes."""

from fastapi import APIRouter, Depends

from app.api.deps import GoneDep, ServicesDep, require_json
from app.api.responses import problems
from app.schemas import (
    ClassifyNameBatchRequest,
    ClassifyNameBatchResponse,
    ClassifyNameRequest,
    ClassifyNameResponse,
)
from app.schemas_explain import NameExplanation
from app.services.names import MODEL

router = APIRouter(tags=["names"], dependencies=[Depends(require_json)])
ERRORS = problems(400, 413, 415, 422, 429, 503, 504)


@router.post("/classify-name", response_model=ClassifyNameResponse, responses=ERRORS)
async def classify_name(
    body: ClassifyNameRequest, services: ServicesDep, gone: GoneDep
) -> ClassifyNameResponse:
    """Tell the likeliest countries of origin of a surname written in any script."""
    (answer,) = await services.names.classify([body.name], body.top_k, gone)
    return answer


@router.post("/classify-name/batch", response_model=ClassifyNameBatchResponse, responses=ERRORS)
async def classify_names(
    body: ClassifyNameBatchRequest, services: ServicesDep, gone: GoneDep
) -> ClassifyNameBatchResponse:
    """Classify up to 256 surnames at once; results come back in input order."""
    results = await services.names.classify(body.names, body.top_k, gone)
    return ClassifyNameBatchResponse(model=MODEL, results=results)


@router.post("/classify-name/explain", response_model=NameExplanation, responses=ERRORS)
async def explain_name(
    body: ClassifyNameRequest, services: ServicesDep, gone: GoneDep
) -> NameExplanation:
    """Classify a surname and show how much each of its letters counted for the best country."""
    return await services.names.explain(body.name, body.top_k, gone)
