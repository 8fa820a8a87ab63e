"""The peer: LitServe serving the same digit checkpoint with its own batching."""

import os
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
import torch.nn.functional as F
from fastapi import Request

from app.imaging import decode_image, normalize, to_mnist
from models.checkpoint import load_checkpoint


class DigitAPI(ls.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        model = os.environ.get("BENCH_MODEL", "digit-inception")
        self.checkpoint = load_checkpoint(Path("weights") / model)
        # The model runs as the service runs it (channels-last on the CPU), so that the
        # comparison is of the serving, not of the convolution layout.
        self.checkpoint.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        pre = self.checkpoint.card["preprocessing"]
        self.mean, self.std = float(pre["mean"]), float(pre["std"])

    def decode_request(self, request: Request) -> np.ndarray:
        data = request["file"].file.read()  # LitServe hands over the parsed form
        return to_mnist(decode_image(data))

    def batch(self, inputs: list[np.ndarray]) -> torch.Tensor:
        x = normalize(np.stack(inputs), self.mean, self.std)  # B x 1 x 28 x 28
        return x.contiguous(memory_format=torch.channels_last)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return F.softmax(self.checkpoint.model(x), dim=1)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, output: torch.Tensor) -> dict[str, Any]:
        return {"digit": int(output.argmax()), "probability": float(output.max())}


if __name__ == "__main__":
    server = ls.LitServer(DigitAPI(max_batch_size=64, batch_timeout=0.005), accelerator="cpu")
    server.run(port=int(os.environ.get("BENCH_PORT", "8100")), generate_client_file=False)
