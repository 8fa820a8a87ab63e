"""Character RNN routes: lecture-12 transduction and Shakespeare generation."""

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from app.api.deps import GoneDep, ServicesDep, require_json
from app.api.responses import problems
from app.schemas import GenerateRequest, GenerateResponse, TransduceRequest, TransduceResponse
from app.services.char_rnn import GenerateOptions

router = APIRouter(prefix="/char-rnn", tags=["char-rnn"], dependencies=[Depends(require_json)])


@router.post(
    "/transduce", response_model=TransduceResponse, responses=problems(400, 413, 415, 422, 503)
)
async def transduce(body: TransduceRequest, services: ServicesDep) -> TransduceResponse:
    """Map each input character to the model's output character ("hello" -> "ohlol")."""
    (steps,) = await services.chars.transduce(body.model, [body.text])
    return TransduceResponse(output="".join(s.output for s in steps), model=body.model, steps=steps)


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        **problems(400, 413, 415, 422, 429, 503, 504),
        200: {
            "content": {
                "text/event-stream": {
                    "example": (
                        'event: chunk\ndata: {"text": "\\nWhat say"}\n\n'
                        'event: done\ndata: {"model": "char-rnn-shakespeare", "chars": 200}\n\n'
                    )
                }
            },
            "description": "JSON, or server-sent events with stream=true",
        },
    },
)
async def generate(
    body: GenerateRequest, services: ServicesDep, gone: GoneDep
) -> GenerateResponse | StreamingResponse:
    """Continue a prompt character by character; ``stream: true`` sends chunks as they come."""
    options = GenerateOptions(body.max_chars, body.temperature, body.top_k, body.seed)
    if not body.stream:
        (text,) = await services.chars.generate(body.model, [body.prompt], options, gone)
        return GenerateResponse(text=text, model=body.model)
    generation = await services.chars.stream(body.model, body.prompt, options, gone)

    async def events() -> AsyncIterator[str]:
        sent = 0
        async for chunk in generation.chunks():
            sent += len(chunk)
            yield f"event: chunk\ndata: {json.dumps({'text': chunk})}\n\n"
        if not generation.cut:
            yield f"event: done\ndata: {json.dumps({'model': body.model, 'chars': sent})}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
