"""The naive peer: FastAPI with the model called once per request and a 15-line preprocessing.

What a first version of such a service looks like: the upload read through ``UploadFile``,
``bench.naive.naive_mnist`` (invert a light background, crop the ink, longest side 20 px, centre
of mass at 14, 14), one forward pass per request, no batching.
"""

import os
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, File, UploadFile

from bench.naive import naive_mnist
from models.checkpoint import load_checkpoint

app = FastAPI()
checkpoint = load_checkpoint(Path("weights") / os.environ.get("BENCH_MODEL", "digit-resnet"))
MEAN = float(checkpoint.card["preprocessing"]["mean"])
STD = float(checkpoint.card["preprocessing"]["std"])


@app.post("/digit")
def digit(file: Annotated[UploadFile, File()]) -> dict[str, float]:
    x = torch.from_numpy(naive_mnist(file.file.read())).reshape(1, 1, 28, 28)
    with torch.inference_mode():
        probs = torch.softmax(checkpoint.model((x - MEAN) / STD), dim=1)[0]
    best = int(probs.argmax())
    return {"digit": best, "probability": float(probs[best])}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
