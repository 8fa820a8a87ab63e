"""Surname -> country routes."""

import asyncio
from typing import Final

from fastapi import APIRouter, Depends, Request

from app.api.deps import RuntimeDep, client_gone, require_json
from app.api.responses import problems
from app.errors import InvalidInput, ServiceError
from app.runtime import Runtime
from app.schemas import (
    ClassifyNameBatchRequest,
    ClassifyNameBatchResponse,
    ClassifyNameRequest,
    ClassifyNameResponse,
)
from app.schemas_explain import NameExplanation
from app.services.common import top_predictions
from app.services.names import NameInput, fold_name

router = APIRouter(tags=["names"], dependencies=[Depends(require_json)])
MODEL: Final = "name-gru"


async def _classify(
    request: Request, runtime: Runtime, item: NameInput, top_k: int
) -> ClassifyNameResponse:
    answer = await runtime.batcher(MODEL).submit(item.normalized, client_gone(request))
    labels = runtime.names[MODEL].labels
    return ClassifyNameResponse(
        name=item.name,
        normalized=item.normalized,
        model=MODEL,
        version=answer.version,
        predictions=top_predictions(answer.probs, labels, top_k),
    )


@router.post(
    "/classify-name",
    response_model=ClassifyNameResponse,
    responses=problems(400, 413, 415, 422, 429, 503, 504),
)
async def classify_name(
    request: Request, body: ClassifyNameRequest, runtime: RuntimeDep
) -> ClassifyNameResponse:
    """Tell the likeliest countries of origin of a surname written in any script."""
    return await _classify(request, runtime, fold_name(body.name), body.top_k)


@router.post(
    "/classify-name/batch",
    response_model=ClassifyNameBatchResponse,
    responses=problems(400, 413, 415, 422, 429, 503, 504),
)
async def classify_names(
    request: Request, body: ClassifyNameBatchRequest, runtime: RuntimeDep
) -> ClassifyNameBatchResponse:
    """Classify up to 256 surnames at once; results come back in input order."""
    runtime.batcher(MODEL)
    items, errors = [], []
    for i, name in enumerate(body.names):
        try:
            items.append(fold_name(name))
        except ServiceError as exc:
            errors.append({"loc": ["body", "names", i], "msg": exc.detail, "type": "name"})
    if errors:
        raise InvalidInput(
            f"{len(errors)} of {len(body.names)} names are unusable: {errors[0]['msg']}",
            errors=errors,
        )
    results = await asyncio.gather(
        *(_classify(request, runtime, item, body.top_k) for item in items)
    )
    return ClassifyNameBatchResponse(model=MODEL, results=list(results))


@router.post(
    "/classify-name/explain",
    response_model=NameExplanation,
    responses=problems(400, 413, 415, 422, 429, 503, 504),
)
async def explain_name(
    request: Request, body: ClassifyNameRequest, runtime: RuntimeDep
) -> NameExplanation:
    """Classify a surname and show how much each of its letters counted for the best country."""
    item = fold_name(body.name)
    batcher, classifier = runtime.batcher(MODEL), runtime.name_classifier(MODEL)
    return await runtime.explanation().name(
        classifier, batcher, item, top_k=body.top_k, gone=client_gone(request)
    )
