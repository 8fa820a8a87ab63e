"""The peer: LitServe serving the same digit checkpoint with its own batching."""

import os
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from fastapi import Request

from app.services.digits import DigitNet, Limits, Pipeline
from models.checkpoint import load_checkpoint


class DigitAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        # The service's own digit service decodes, prepares and runs the model (folded where
        # the service folds it), so that the comparison is of the serving.
        model = os.environ.get("BENCH_MODEL", "digit-resnet")
        self.service = DigitNet(load_checkpoint(Path("weights") / model), torch.device("cpu"))
        self.pipeline = Pipeline(Limits(max_pixels=50_000_000, max_decoded_bytes=200 * 1024**2))

    def decode_request(self, request: Request) -> np.ndarray:
        data = request["file"].file.read()  # LitServe hands over the parsed form
        return self.pipeline.prepare(self.pipeline.open(data))

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs

    def predict(self, x: list[np.ndarray]) -> list[list[float]]:
        return self.service.predict_batch(x)

    def unbatch(self, output: list[list[float]]) -> list[list[float]]:
        return output

    def encode_response(self, output: list[float]) -> dict[str, Any]:
        best = max(range(len(output)), key=output.__getitem__)
        return {"digit": best, "probability": output[best]}


if __name__ == "__main__":
    server = ls.LitServer(DigitAPI(max_batch_size=64, batch_timeout=0.005), accelerator="cpu")
    server.run(port=int(os.environ.get("BENCH_PORT", "8100")), generate_client_file=False)
