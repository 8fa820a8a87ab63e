"""The digit pipeline's steps, each on its own, and the whole on MNIST's own digits."""

from pathlib import Path

import numpy as np
import pytest

from app.errors import NoDigitFound
from app.preprocessing import digits, uploads
from training.data import load_mnist


def bar(size: int = 100, width: int = 10, ink: int = 20, paper: int = 230) -> np.ndarray:
    """A dark vertical bar (a "1") on light paper, uint8."""
    page = np.full((size, size), paper, np.uint8)
    page[size // 5 : size - size // 5, size // 2 - width // 2 : size // 2 + width // 2] = ink
    return page


def test_polarity_makes_the_ink_bright_whichever_way_it_was_written() -> None:
    dark_on_light = bar()
    assert digits.ink_bright(dark_on_light)[50, 50] == 255 - 20
    light_on_dark = 255 - dark_on_light
    assert np.array_equal(digits.ink_bright(light_on_dark), light_on_dark)


def test_background_is_one_level_on_even_paper_and_a_surface_under_uneven_light() -> None:
    even = digits.ink_bright(bar())
    assert digits.background(even) == pytest.approx(25)
    ramp = np.linspace(0, 80, 200, dtype=np.float32)[None, :].repeat(200, axis=0)
    lit = np.clip(digits.ink_bright(bar(200)).astype(np.float32) + ramp, 0, 255).astype(np.uint8)
    surface = digits.background(lit)
    assert isinstance(surface, np.ndarray) and surface.shape == lit.shape
    assert surface[100, 190] - surface[100, 10] > 50  # follows the light across the page
    assert surface[100, 100] < lit[100, 100] - 100  # and not the stroke


def test_contrast_puts_paper_at_zero_and_strokes_at_one() -> None:
    x = digits.ink_bright(bar())
    a = digits.contrast(x, digits.background(x))
    assert a.dtype == np.float32 and a.min() == 0.0 and a.max() == 1.0
    assert a[50, 50] == 1.0 and a[5, 5] == 0.0


def test_contrast_on_even_paper_is_the_residual_read_against_a_flat_surface() -> None:
    rng = np.random.default_rng(0)
    x = digits.ink_bright(np.clip(bar(120) + rng.normal(0, 3, (120, 120)), 0, 255).astype(np.uint8))
    paper = digits.background(x)
    assert isinstance(paper, int)
    flat = np.full_like(x, paper)
    assert np.array_equal(digits.contrast(x, paper), digits.contrast(x, flat))


def test_working_size_averages_whole_blocks() -> None:
    rng = np.random.default_rng(1)
    scan = rng.integers(0, 256, (175, 150), dtype=np.uint8)
    small = uploads.working_size(scan, 128)
    assert small.shape == (87, 75)  # 2 x 2 blocks; the last row and column make no block
    block = scan[10:12, 20:22].astype(np.float64).mean()
    assert abs(int(small[5, 10]) - block) <= 0.5
    assert uploads.working_size(scan[:128, :100], 128).shape == (128, 100)  # small enough
    assert uploads.working_size(scan, 128, whole=False).shape == (128, 110)
    canvas = rng.integers(0, 256, (280, 280), dtype=np.uint8)
    assert uploads.working_size(canvas, 128).shape == (93, 93)  # 3 x 3 blocks


def test_contrast_refuses_a_blank_image() -> None:
    x = digits.ink_bright(np.full((60, 80), 200, np.uint8))
    with pytest.raises(NoDigitFound, match="no digit found"):
        digits.contrast(x, digits.background(x))


def test_ink_box_skips_specks_and_lines_along_the_edge() -> None:
    a = np.zeros((100, 100), np.float32)
    a[30:70, 45:55] = 1.0  # the digit
    a[5, 5] = 1.0  # a speck
    a[98:100, :] = 1.0  # the paper's edge
    assert digits.ink_box(a) == (30, 70, 45, 55)


def test_ink_box_keeps_a_detached_bar() -> None:
    a = np.zeros((100, 100), np.float32)
    a[30:70, 45:55] = 1.0
    a[20:24, 40:80] = 1.0  # the separate top bar of a hand-written 5
    assert digits.ink_box(a) == (20, 70, 40, 80)


def test_ink_box_takes_anti_aliased_edges_but_not_jpeg_ringing() -> None:
    a = np.zeros((100, 100), np.float32)
    a[30:70, 45:55] = 1.0
    a[28:30, 40:60] = 0.006  # a JPEG's ringing on white paper: a fraction of a percent
    assert digits.ink_box(a) == (30, 70, 45, 55)
    a[70, 45:55] = 0.03  # the anti-aliased lower edge of the stroke
    assert digits.ink_box(a) == (30, 71, 45, 55)


def test_thicken_grows_only_strokes_that_would_be_thinner_than_mnists() -> None:
    thin = np.zeros((200, 200), np.float32)
    thin[:, 98:101] = 1.0  # 3 px wide at 200 px: 0.3 px at 20
    grown = digits.thicken(thin)
    assert digits.stroke_width(grown) * 20 / max(grown.shape) >= digits.MIN_STROKE
    bold = np.zeros((40, 40), np.float32)
    bold[:, 15:25] = 1.0
    assert digits.thicken(bold) is bold


def test_resize_scales_the_longer_side_to_twenty() -> None:
    assert digits.resize(np.ones((100, 50), np.float32)).shape == (20, 10)
    assert digits.resize(np.ones((7, 12), np.float32)).shape == (12, 20)
    same = np.ones((20, 9), np.float32)
    assert digits.resize(same) is same


def test_centre_puts_the_centre_of_mass_at_fourteen() -> None:
    a = np.zeros((20, 10), np.float32)
    a[:, :3] = 1.0  # mass on the left
    field = digits.centre(a)
    ys, xs = np.mgrid[0:28, 0:28]
    assert field.shape == (28, 28)
    assert abs((field * ys).sum() / field.sum() - 14) <= 0.5
    assert abs((field * xs).sum() / field.sum() - 14) <= 0.5


def test_a_tall_thin_one_keeps_its_ink() -> None:
    one = np.full((160, 120), 255, np.uint8)
    one[20:141, 54:66] = 0  # a 12 px pen: 2 px wide once scaled to 20 px tall
    field = digits.to_mnist(one)
    assert field.sum() > 30
    assert abs(digits.centre(np.ones((20, 2), np.float32)).sum() - 40) < 1e-6


def test_mnist_form_is_recognised_only_when_the_steps_would_change_nothing() -> None:
    field = np.zeros((28, 28), np.uint8)
    field[5:25, 12:18] = 255  # a "1": box 20 x 6, centre of mass at (14.5, 14.5)
    same = digits.mnist_form(field)
    assert same is not None and np.array_equal(same, field / np.float32(255))
    off_centre = np.roll(field, 3, axis=1)
    assert digits.mnist_form(off_centre) is None
    np.testing.assert_allclose(digits.to_mnist(off_centre), same, atol=1e-6)  # the steps move it
    small = np.zeros((28, 28), np.uint8)
    small[8:20, 12:16] = 255  # box 12 px: to be scaled
    assert digits.mnist_form(small) is None
    assert digits.mnist_form(255 - field) is None  # dark on light
    assert digits.mnist_form(np.zeros((56, 56), np.uint8)) is None


@pytest.mark.slow
def test_mnist_test_digits_come_through_unchanged(data_dir: Path) -> None:
    """Every step leaves MNIST's own digits as they are (strokes whose strongest pixel is under
    255 are brought up to it: 1/255), but for a few with faint marks far from their strokes."""
    images = load_mnist(data_dir, "test").images.numpy()
    changed = sum(
        float(np.abs(digits.to_mnist(image) - image.astype(np.float32) / 255).max())
        > 1 / 255 + 1e-6
        for image in images
    )
    assert changed <= 10  # measured: none of 10,000
