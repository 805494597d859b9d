"""minimenet/data/batches.py: augmentation and normalisation, evaluation batches, and the seeded,
resumable training batches."""

import numpy as np
import pytest

from minimenet import data
from minimenet.data import DatasetError, SaliencyDataset, TrainingBatches

from conftest import make_msra_folder


def test_augment_shapes_and_crop_box_bounds():
    rng = np.random.default_rng(0)
    for _ in range(50):
        left, top, right, bottom = data.random_crop_box(30, 40, rng)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert 24 <= bottom - top <= 30 and 32 <= right - left <= 40
    image = np.zeros((30, 40, 3), np.uint8)
    augmented_image, augmented_mask = data.augment(image, np.zeros((30, 40), bool), 16, rng)
    assert augmented_image.shape == (16, 16, 3) and augmented_mask.shape == (16, 16)


def test_flip_moves_image_and_mask_together():
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :5] = 255  # a white band on the left, and the mask marks it
    mask = np.zeros((20, 20), bool)
    mask[:, :5] = True
    flipped_image, flipped_mask = data.augment(image, mask, 20, np.random.default_rng(0),
                                               crop_scale=(1, 1), flip_probability=1)
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    np.testing.assert_array_equal(flipped_mask, mask[:, ::-1])
    kept_image, kept_mask = data.augment(image, mask, 20, np.random.default_rng(0),
                                         crop_scale=(1, 1), flip_probability=0)
    np.testing.assert_array_equal(kept_image, image)
    np.testing.assert_array_equal(kept_mask, mask)


def test_normalize_keeps_raw_values_channels_first_and_round_trips():
    # The authors feed raw 0-255 RGB: no mean subtraction, no scaling.
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    normalised = data.normalize(images)
    assert normalised.shape == (2, 3, 5, 6) and normalised.dtype == np.float32
    assert normalised[0, 1, 2, 3] == images[0, 2, 3, 1]
    np.testing.assert_array_equal(data.denormalize(normalised), images)


def test_training_crops_keep_ninety_to_a_hundred_percent_of_each_side():
    rng = np.random.default_rng(0)
    boxes = [data.random_crop_box(200, 300, rng) for _ in range(500)]
    heights = np.array([bottom - top for _, top, _, bottom in boxes])
    widths = np.array([right - left for left, _, right, _ in boxes])
    assert heights.min() >= 180 and widths.min() >= 270 and heights.max() <= 200 and widths.max() <= 300
    assert heights.min() < 184 and widths.min() < 276  # the whole range is used


def test_resize_saliency_map_back_to_a_mask_size():
    resized = data.resize_saliency_map(np.full((8, 8), 0.25, np.float32), (30, 17))
    assert resized.shape == (30, 17)
    np.testing.assert_allclose(resized, 0.25, atol=1e-6)


def test_evaluation_batches_keep_original_masks(tmp_path):
    root = make_msra_folder(tmp_path / "d")
    batches = list(data.evaluation_batches(SaliencyDataset(root), size=8, batch_size=2))
    assert [batch.stems for batch in batches] == [["a", "b"], ["c"]]
    assert batches[0].images.shape == (2, 3, 8, 8) and batches[0].images.dtype == np.float32
    assert batches[0].masks[0].shape == (10, 12)


def test_training_batches_types_and_epochs(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    batches = TrainingBatches(dataset, batch_size=2, size=8, seed=5)
    images, masks = next(batches)
    assert images.shape == (2, 3, 8, 8) and images.dtype == np.float32
    assert masks.shape == (2, 8, 8) and masks.dtype == np.int32 and set(np.unique(masks)) <= {0, 1}
    for _ in range(3):
        next(batches)
    assert batches.epoch == 2 and batches.position == 2  # 8 items drawn from 3 per epoch


def test_training_batches_are_seeded(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    first = [next(TrainingBatches(dataset, 2, 8, seed=1))[0] for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    other = next(TrainingBatches(dataset, 2, 8, seed=2))[0]
    assert not np.array_equal(first[0], other)


def test_resumed_sampler_draws_the_same_batches(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d", stems="abcde"))
    uninterrupted = TrainingBatches(dataset, batch_size=2, size=8, seed=7)
    expected = [next(uninterrupted) for _ in range(7)]

    interrupted = TrainingBatches(dataset, batch_size=2, size=8, seed=7)
    for _ in range(4):
        next(interrupted)
    saved = interrupted.state_dict()
    resumed = TrainingBatches(dataset, batch_size=2, size=8, seed=0)  # the state carries the seed
    resumed.load_state_dict(saved)
    for images, masks in expected[4:]:
        resumed_images, resumed_masks = next(resumed)
        np.testing.assert_array_equal(resumed_images, images)
        np.testing.assert_array_equal(resumed_masks, masks)


def test_sampler_state_from_another_dataset_is_refused(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    state = TrainingBatches(dataset, 2, 8).state_dict()
    state["dataset_size"] = 99
    with pytest.raises(DatasetError, match="same dataset"):
        TrainingBatches(dataset, 2, 8).load_state_dict(state)
