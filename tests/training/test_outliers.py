"""The generated non-digits that teach the digit nets to doubt."""

import numpy as np

from training.outliers import FIELD, font_paths, mnist_form, outliers


def test_outliers_are_seeded_and_in_mnist_form() -> None:
    first, again, other = outliers(64, seed=3), outliers(64, seed=3), outliers(64, seed=4)
    assert first.shape == (64, FIELD, FIELD) and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    for image in first:
        ys, xs = np.nonzero(image > 40)
        assert len(ys) > 0, "every outlier has ink"
        # as MNIST: ink inside the central 20 x 20 box give or take the centring shift
        assert ys.max() - ys.min() <= 21 and xs.max() - xs.min() <= 21
        centre = np.array(np.nonzero(image)).T.astype(float)
        weights = image[image > 0].astype(float)
        cy, cx = (centre * weights[:, None]).sum(0) / weights.sum()
        assert abs(cy - 13.5) < 1.5 and abs(cx - 13.5) < 1.5


def test_mnist_form_of_nothing_is_none_and_fonts_are_found() -> None:
    assert mnist_form(np.zeros((128, 128), np.uint8)) is None
    assert font_paths("DejaVu"), "matplotlib ships the DejaVu fonts the outliers are drawn in"
    trained, measured = set(font_paths("DejaVu")), set(font_paths("STIX"))
    assert measured and not trained & measured, "bench.nondigits measures on other fonts"
