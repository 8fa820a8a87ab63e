"""The digit service: answers that do not depend on batch-mates, and the fold behind /digit."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.services.digits import DigitNet
from app.settings import Settings
from models.checkpoint import load_checkpoint


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = np.zeros((28, 28), np.float32)
        image[4:24, 8:20] = rng.random((20, 12), dtype=np.float32)
        images.append(image)
    return images


@pytest.mark.parametrize("name", ["digit-resnet", "digit-inception"])
@pytest.mark.parametrize("fold", [True, False])
def test_an_images_answer_does_not_depend_on_its_batch(
    tiny_weights: Path, name: str, fold: bool
) -> None:
    service = DigitNet(load_checkpoint(tiny_weights / name), torch.device("cpu"), fold=fold)
    images = _images(48)
    together = np.array(service.predict_batch(images))
    alone = np.array([service.predict_batch([image])[0] for image in images[:6]])
    in_other_company = np.array(service.predict_batch(images[:6] + _images(10, seed=1)))[:6]
    np.testing.assert_allclose(alone, together[:6], atol=1e-5)
    np.testing.assert_allclose(in_other_company, together[:6], atol=1e-5)
    assert together.shape == (48, 10)
    np.testing.assert_allclose(together.sum(axis=1), 1.0, atol=1e-5)


def _png(seed: int) -> bytes:
    pixels = np.zeros((28, 28), np.uint8)
    rng = np.random.default_rng(seed)
    pixels[6:22, 10:18] = rng.integers(64, 256, (16, 8), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@pytest.mark.anyio
async def test_service_folds_the_inception_net_and_answers_as_unfolded(
    settings: Settings, make_client: Callable[[Settings], Any]
) -> None:
    answers: dict[bool, list[dict[str, Any]]] = {}
    for fold in (True, False):
        async with make_client(settings.model_copy(update={"fold": fold})) as client:
            cards = {m["name"]: m for m in (await client.get("/models")).json()["models"]}
            assert cards["digit-inception"]["folded"] is fold
            assert cards["digit-resnet"]["folded"] is False
            answers[fold] = []
            for seed in range(3):
                response = await client.post(
                    "/digit?model=digit-inception",
                    files={"file": ("d.png", _png(seed), "image/png")},
                )
                assert response.status_code == 200, response.text
                answers[fold].append(response.json())
    for folded, plain in zip(answers[True], answers[False], strict=True):
        assert folded["digit"] == plain["digit"]
        assert folded["probability"] == pytest.approx(plain["probability"], abs=1e-5)
