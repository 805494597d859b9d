"""Distortions for the robustness experiments: deterministic for a seed, strength where asked."""
import numpy as np
import pytest

from minimenet.distort import AWGN_VARIANCES, JPEG_QUALITIES, Distortion, awgn, jpeg


def photo(seed=0, shape=(40, 56, 3)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    smooth = (np.sin(yy / 5)[..., None] * 60 + np.cos(xx / 7)[..., None] * 60 + 128 + np.arange(3) * 10)
    return np.clip(smooth + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("distortion", [Distortion("awgn", 0.01), Distortion("awgn"), Distortion("jpeg", 20), Distortion("jpeg")],
                         ids=lambda d: d.name)
def test_the_same_seed_and_stem_give_the_same_image(distortion):
    image = photo()
    first, second = distortion(image, "0001"), distortion(image.copy(), "0001")
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.uint8 and first.shape == image.shape and not np.array_equal(first, image)
    np.testing.assert_array_equal(image, photo())  # the input is left alone


def test_random_strengths_differ_between_images_and_seeds():
    image = photo()
    noise = lambda d, stem: d(image, stem).astype(int) - image  # noqa: E731
    spread = [noise(Distortion("awgn"), stem).std() for stem in ("a", "b", "c", "d")]
    assert len(set(np.round(spread, 3))) == 4
    assert not np.array_equal(Distortion("awgn", seed=0)(image, "a"), Distortion("awgn", seed=1)(image, "a"))


def test_awgn_has_the_requested_variance():
    flat = np.full((200, 200, 3), 128, np.uint8)
    for variance in (0.001, 0.01):
        noisy = awgn(flat, variance, np.random.default_rng(0)).astype(float) / 255
        assert noisy.var() == pytest.approx(variance, rel=0.05)
    lo, hi = AWGN_VARIANCES
    assert 0 < lo < hi < 1


def test_jpeg_loses_more_at_lower_quality():
    image = photo(shape=(64, 64, 3))
    errors = [np.abs(jpeg(image, q).astype(int) - image).mean() for q in (10, 30, 90)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert JPEG_QUALITIES == (10, 50)


def test_bad_strengths_name_the_range():
    with pytest.raises(ValueError, match="kind must be one of"):
        Distortion("blur")
    with pytest.raises(ValueError, match=r"AWGN variance must lie in \[0, 1\]"):
        Distortion("awgn", 3)
    with pytest.raises(ValueError, match="JPEG quality must be an integer from 1 to 95"):
        Distortion("jpeg", 0.5)
