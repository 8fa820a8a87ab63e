"""Character RNN routes: lecture-12 transduction and Shakespeare generation."""

import json
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from app.api.deps import RuntimeDep, client_gone, require_json
from app.api.responses import problems
from app.errors import InvalidInput
from app.schemas import GenerateRequest, GenerateResponse, TransduceRequest, TransduceResponse

router = APIRouter(prefix="/char-rnn", tags=["char-rnn"], dependencies=[Depends(require_json)])


@router.post(
    "/transduce", response_model=TransduceResponse, responses=problems(400, 413, 415, 422, 503)
)
async def transduce(body: TransduceRequest, runtime: RuntimeDep) -> TransduceResponse:
    """Map each input character to the model's output character ("hello" -> "ohlol")."""
    steps = await anyio.to_thread.run_sync(runtime.char_model(body.model).transduce, body.text)
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
    body: GenerateRequest, request: Request, runtime: RuntimeDep
) -> GenerateResponse | StreamingResponse:
    """Continue a prompt character by character; ``stream: true`` sends chunks as they come."""
    model = runtime.char_model(body.model)
    cap = runtime.settings.max_generate_chars
    if body.max_chars > cap:
        raise InvalidInput(f"max_chars is {body.max_chars}; this server generates at most {cap}")
    model.encode(body.prompt, "prompt")
    generations = runtime.generation()
    if not body.stream:
        text = await generations.generate(model, body, client_gone(request))
        return GenerateResponse(text=text, model=body.model)
    generation = await generations.start(model, body, client_gone(request))

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
