"""The HTTP ceiling: a bare FastAPI app that reads the same requests and does no model work."""

from typing import Annotated

from fastapi import FastAPI, File, Request, UploadFile
from pydantic import BaseModel

app = FastAPI()


class Name(BaseModel):
    name: str


@app.post("/digit")
async def digit(file: Annotated[UploadFile, File()]) -> dict[str, int]:
    return {"bytes": len(await file.read())}


@app.post("/digit-raw")
async def digit_raw(request: Request) -> dict[str, int]:
    """The ceiling of an upload sent as the body itself (``image/*``)."""
    return {"bytes": len(await request.body())}


@app.post("/classify-name")
async def classify_name(body: Name) -> dict[str, str]:
    return {"name": body.name}
