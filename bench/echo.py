"""The HTTP ceiling: a bare FastAPI app that reads the same requests and does no model work."""

from typing import Annotated

from fastapi import FastAPI, File, UploadFile
from pydantic import BaseModel

app = FastAPI()


class Name(BaseModel):
    name: str


@app.post("/digit")
async def digit(file: Annotated[UploadFile, File()]) -> dict[str, int]:
    return {"bytes": len(await file.read())}


@app.post("/classify-name")
async def classify_name(body: Name) -> dict[str, str]:
    return {"name": body.name}
