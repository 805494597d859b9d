import json
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from minimenet import data, synthetic
from minimenet.data import DatasetError, DatasetWarning, SaliencyDataset, TrainingBatches
from minimenet.synthetic_transfer import make_transfer_dataset, synthesize_transfer_sample


def write_image(path, height=10, width=12, mode="RGB", seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    Image.fromarray(pixels[..., :channels].squeeze(-1) if channels == 1 else pixels[..., :channels], mode).save(path)


def write_mask(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)


def square_mask(height=10, width=12):
    mask = np.zeros((height, width), np.uint8)
    mask[2:6, 3:8] = 255
    return mask


def make_msra_folder(root, stems=("a", "b", "c")):
    root.mkdir(exist_ok=True)
    for number, stem in enumerate(stems):
        write_image(root / f"{stem}.jpg", seed=number)
        write_mask(root / f"{stem}.png", square_mask())
    return root


def make_split_folder(root, stems=("a", "b", "c")):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for number, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}.png", seed=number)
        write_mask(root / "masks" / f"{stem}.bmp", square_mask())
    return root


def quiet_dataset(root, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return SaliencyDataset(root, **options)


# --- Layouts and pairing ----------------------------------------------------------------------


def test_msra10k_layout_pairs_by_stem(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    assert dataset.layout == "MSRA10K"
    assert dataset.stems == ["a", "b", "c"]
    sample = dataset.load(1)
    assert sample.stem == "b" and sample.image.shape == (10, 12, 3) and sample.image.dtype == np.uint8
    assert sample.mask.dtype == bool and sample.mask.sum() == 20


def test_split_layout_pairs_by_stem(tmp_path):
    dataset = SaliencyDataset(make_split_folder(tmp_path / "d"))
    assert dataset.layout == "split"
    assert dataset.stems == ["a", "b", "c"]
    assert dataset.samples[0].image.name == "a.png" and dataset.samples[0].mask.name == "a.bmp"


def test_missing_masks_and_images_are_reported_not_fatal(tmp_path):
    root = make_msra_folder(tmp_path / "d")
    write_image(root / "lonely_image.jpg")
    write_mask(root / "lonely_mask.png", square_mask())
    with pytest.warns(DatasetWarning) as records:
        dataset = SaliencyDataset(root)
    messages = " ".join(str(record.message) for record in records)
    assert "1 images have no mask" in messages and "lonely_image" in messages
    assert "1 masks have no image" in messages and "lonely_mask" in messages
    assert dataset.stems == ["a", "b", "c"]
    assert dataset.unpaired_images == ["lonely_image"] and dataset.unpaired_masks == ["lonely_mask"]
    assert "1 images without mask, 1 masks without image" in dataset.summary()


def test_empty_folder_error_names_the_accepted_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty") as error:
        SaliencyDataset(tmp_path / "empty")
    assert "MSRA10K" in str(error.value) and "images/" in str(error.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        SaliencyDataset(tmp_path / "nowhere")


def test_wrong_layout_error_says_what_was_found(tmp_path):
    root = tmp_path / "d"
    (root / "Imgs").mkdir(parents=True)
    (root / "notes.txt").write_text("hello")
    write_image(root / "Imgs" / "a.jpg")
    with pytest.raises(DatasetError) as error:
        SaliencyDataset(root)
    message = str(error.value)
    assert "no image-mask pairs" in message and "Imgs/" in message and ".txt" in message
    assert "accepted layouts" in message


def test_images_folder_without_masks_folder_is_named(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has images/ but no masks/"):
        SaliencyDataset(tmp_path / "d")


# --- Damaged files ------------------------------------------------------------------------------


def test_corrupt_and_zero_byte_files_are_skipped_and_counted(tmp_path):
    root = make_msra_folder(tmp_path / "d", stems=("a", "b", "c", "d"))
    (root / "b.jpg").write_bytes(b"")
    (root / "c.png").write_bytes(b"this is not a png at all")
    with pytest.warns(DatasetWarning, match="skipped 2 unreadable files"):
        dataset = SaliencyDataset(root)
    assert dataset.stems == ["a", "d"]
    assert sorted(entry.path.name for entry in dataset.skipped) == ["b.jpg", "c.png"]
    assert "zero-byte" in dataset.skipped[0].reason
    assert "2 unreadable files skipped" in dataset.summary()


def test_truncated_jpeg_is_skipped_when_decoded(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / f"{stem}.jpg")
        write_mask(root / f"{stem}.png", np.zeros((64, 64)))
    whole = (root / "b.jpg").read_bytes()
    (root / "b.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # cut inside the pixel data
    dataset = SaliencyDataset(root)  # the header is intact, so the cheap check passes
    assert len(dataset) == 2
    with pytest.warns(DatasetWarning, match="cannot be decoded"):
        assert dataset.load(1) is None
    assert dataset.load(1) is None  # remembered: not decoded again
    assert [entry.path.name for entry in dataset.skipped] == ["b.jpg"]
    batches = TrainingBatches(dataset, batch_size=3, size=8)
    images, masks = next(batches)  # draws only "a", never crashes
    assert images.shape == (3, 3, 8, 8)


def test_all_files_unreadable_is_an_error(tmp_path):
    root = make_msra_folder(tmp_path / "d", stems=("a",))
    (root / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="none of the image-mask pairs"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        SaliencyDataset(root)


# --- Decoding rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_rgba_and_grey_images_become_rgb(tmp_path, mode):
    root = tmp_path / "d"
    root.mkdir()
    write_image(root / "a.png", mode=mode)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "a.png").rename(root / "images" / "a.png")
    write_mask(root / "masks" / "a.png", square_mask())
    image = SaliencyDataset(root).load(0).image
    assert image.shape == (10, 12, 3) and image.dtype == np.uint8
    source = np.asarray(Image.open(root / "images" / "a.png"))
    expected = np.repeat(source[..., None], 3, axis=-1) if mode == "L" else source[..., :3]
    np.testing.assert_array_equal(image, expected)


def test_grey_mask_binarised_above_128_and_rgb_masks_converted(tmp_path):
    # Grey masks: salient where > 128, PySODMetrics' rule, which minimenet.metrics shares.
    root = tmp_path / "d"
    root.mkdir()
    write_image(root / "a.jpg", height=1, width=4)
    write_mask(root / "a.png", [[0, 128, 129, 255]])
    write_image(root / "b.jpg", height=1, width=2)
    Image.fromarray(np.array([[[255, 255, 255], [40, 40, 40]]], np.uint8)).save(root / "b.png")
    dataset = SaliencyDataset(root)
    np.testing.assert_array_equal(dataset.load(0).mask, [[False, False, True, True]])
    np.testing.assert_array_equal(dataset.load(1).mask, [[True, False]])


def test_mask_of_another_size_is_resized_to_the_image(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_image(root / "a.jpg", height=8, width=8)
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 2:] = 255
    write_mask(root / "a.png", mask)
    dataset = SaliencyDataset(root)
    with pytest.warns(DatasetWarning, match="mask size 4x4 differs from image size 8x8"):
        sample = dataset.load(0)
    assert sample.mask.shape == (8, 8)
    np.testing.assert_array_equal(sample.mask, np.repeat(mask > 0, 2, axis=0).repeat(2, axis=1))


# Mask encodings: each file holds the same 2 x 3 object in another encoding.
OBJECT = np.array([[True, True, False], [False, True, False]])


def palette_mask(indices, colours):
    image = Image.fromarray(np.asarray(indices, np.uint8), "P")
    image.putpalette([channel for colour in colours for channel in colour])
    return image


def rgba_mask(alpha, colour=(255, 255, 255)):
    pixels = np.zeros(alpha.shape + (4,), np.uint8)
    pixels[..., :3] = colour
    pixels[..., 3] = alpha
    return Image.fromarray(pixels, "RGBA")


MASK_ENCODINGS = {
    "labels_0_1": lambda: Image.fromarray(OBJECT.astype(np.uint8)),
    "grey_0_255": lambda: Image.fromarray(OBJECT.astype(np.uint8) * 255),
    "dim_0_100": lambda: Image.fromarray(OBJECT.astype(np.uint8) * 100),
    "16_bit_0_65535": lambda: Image.fromarray(OBJECT.astype(np.uint16) * 65535),
    # Anti-aliased 16-bit: 20000 is below half of 65535 and must not count (PIL's 8-bit
    # conversion clips it to 255, which used to make it salient).
    "16_bit_grey": lambda: Image.fromarray(
        np.where(OBJECT, np.uint16(60000), np.array([[0, 0, 20000], [20000, 0, 0]], np.uint16))),
    "alpha_only_white": lambda: rgba_mask(OBJECT.astype(np.uint8) * 255),
    "alpha_only_black": lambda: rgba_mask(OBJECT.astype(np.uint8) * 255, colour=(0, 0, 0)),
    "grey_alpha_only": lambda: rgba_mask(OBJECT.astype(np.uint8) * 255).convert("LA"),
    "rgb_dark_red": lambda: Image.fromarray(np.where(OBJECT[..., None], np.uint8([128, 0, 0]), np.uint8(0))),
    "voc_palette": lambda: palette_mask(OBJECT.astype(np.uint8), [(0, 0, 0), (128, 0, 0)]),
    "voc_palette_several_classes": lambda: palette_mask(np.where(OBJECT, np.array([[1, 15, 0], [0, 1, 0]]), 0),
                                                        [(0, 0, 0), (128, 0, 0)] + [(0, 0, 0)] * 13 + [(192, 128, 128)]),
    "grey_palette": lambda: palette_mask(np.where(OBJECT, 2, np.array([[0, 0, 1], [1, 0, 1]])),
                                         [(0, 0, 0), (90, 90, 90), (230, 230, 230)]),
}


def one_pair_with_mask(tmp_path, encoding):
    root = tmp_path / "d"
    root.mkdir()
    write_image(root / "a.jpg", height=2, width=3)
    MASK_ENCODINGS[encoding]().save(root / "a.png")
    return root


@pytest.mark.parametrize("encoding", sorted(MASK_ENCODINGS))
def test_mask_encodings_are_binarised_to_the_object(tmp_path, encoding):
    root = one_pair_with_mask(tmp_path, encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # understood, so no "comes out empty" warning either
        mask = SaliencyDataset(root).load(0).mask
    np.testing.assert_array_equal(mask, OBJECT)


@pytest.mark.parametrize("encoding", sorted(MASK_ENCODINGS))
def test_metrics_reads_a_mask_exactly_as_loading_does(tmp_path, encoding):
    from minimenet import metrics
    root = one_pair_with_mask(tmp_path, encoding)
    loaded = SaliencyDataset(root).load(0).mask
    np.testing.assert_array_equal(metrics.prepare_ground_truth(root / "a.png"), loaded)
    with Image.open(root / "a.png") as image:
        if image.mode in ("L", "I;16", "I"):  # grey files give the same answer as plain arrays, too
            np.testing.assert_array_equal(metrics.prepare_ground_truth(np.asarray(image)), loaded)


def test_mask_that_comes_out_empty_or_full_from_several_values_warns(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    for stem, values in (("dark", [[0, 40, 90]]), ("bright", [[200, 230, 255]]), ("blank", [[0, 0, 0]]),
                         ("whole", [[255, 255, 255]])):
        write_image(root / f"{stem}.jpg", height=1, width=3)
        write_mask(root / f"{stem}.png", values)
    dataset = SaliencyDataset(root)
    by_stem = {stem: index for index, stem in enumerate(dataset.stems)}
    with pytest.warns(DatasetWarning, match=r"dark.png: the mask comes out empty although the file holds values "
                                            r"from 0 to 90; check its encoding"):
        assert not dataset.load(by_stem["dark"]).mask.any()
    with pytest.warns(DatasetWarning, match="bright.png: the mask comes out all salient"):
        assert dataset.load(by_stem["bright"]).mask.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # one value only: an honest empty or full mask
        assert not dataset.load(by_stem["blank"]).mask.any()
        assert dataset.load(by_stem["whole"]).mask.all()


# High bit depth images.


def test_16_bit_grey_image_is_scaled_to_8_bits(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ramp = np.linspace(0, 65535, 2 * 12).astype(np.uint16).reshape(2, 12)
    Image.fromarray(ramp).save(root / "images" / "a.png")  # PIL's convert("RGB") made this all white
    write_mask(root / "masks" / "a.png", square_mask(2, 12))
    image = quiet_dataset(root).load(0).image
    assert image.shape == (2, 12, 3) and image.dtype == np.uint8
    expected = np.rint(ramp / 257).astype(np.uint8)
    np.testing.assert_array_equal(image, np.repeat(expected[..., None], 3, axis=-1))


@pytest.mark.parametrize("values, expected", [
    ([[0.0, 0.25, 1.0]], [[0, 64, 255]]),          # within [0, 1]: the 0-1 convention
    ([[-2.0, 0.0, 2.0]], [[0, 128, 255]]),         # any other range: stretched from min to max
    ([[10.0, 100.0, np.nan]], [[0, 255, 0]]),      # NaN becomes 0
])
def test_float_tiff_is_scaled_by_its_convention(tmp_path, values, expected):
    path = tmp_path / "a.tif"
    Image.fromarray(np.asarray(values, np.float32)).save(path)  # PIL's convert("RGB") made 0-1 floats black
    image = data.read_image(path)
    np.testing.assert_array_equal(image, np.repeat(np.asarray(expected, np.uint8)[..., None], 3, axis=-1))


# EXIF orientation.


def exif_with_orientation(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def corner_marked(height, width):
    """RGB blocks that tell every turn and mirror apart: red top left, green top right, blue below."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:height // 2, :width // 2] = (255, 0, 0)
    pixels[:height // 2, width // 2:] = (0, 255, 0)
    pixels[height // 2:, :width // 4] = (0, 0, 255)
    return pixels


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_images(tmp_path, orientation):
    from PIL import ImageOps
    root = tmp_path / "d"
    root.mkdir()
    Image.fromarray(corner_marked(16, 24)).save(root / "a.jpg", quality=100, exif=exif_with_orientation(orientation))
    with Image.open(root / "a.jpg") as stored:
        displayed = np.asarray(ImageOps.exif_transpose(stored).convert("RGB")).astype(int)
    height, width = displayed.shape[:2]
    mask = np.zeros((height, width), np.uint8)  # drawn on the displayed picture, as an annotator sees it
    mask[: height // 2, : width // 2] = 255
    write_mask(root / "a.png", mask)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # sizes agree: no "resized" warning
        sample = SaliencyDataset(root).load(0)
    assert sample.image.shape == displayed.shape == ((24, 16, 3) if orientation in (6, 8) else (16, 24, 3))
    assert np.abs(sample.image.astype(int) - displayed).max() <= 8  # JPEG rounding only
    np.testing.assert_array_equal(sample.mask, mask > 0)


def test_mask_with_its_own_exif_orientation_is_turned_too(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_image(root / "a.jpg", height=12, width=8)
    stored = np.zeros((8, 12), np.uint8)
    stored[:2, :] = 255  # a stripe along the stored top edge
    Image.fromarray(stored).save(root / "a.png", exif=exif_with_orientation(6))  # 90 degrees clockwise
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        mask = SaliencyDataset(root).load(0).mask
    np.testing.assert_array_equal(mask, np.rot90(stored, k=-1) > 0)  # the stripe is now the right edge


def test_mask_drawn_on_the_stored_pixels_of_a_turned_image_is_turned_like_it(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    Image.fromarray(corner_marked(8, 12)).save(root / "a.jpg", quality=100, exif=exif_with_orientation(6))
    stored_mask = np.zeros((8, 12), np.uint8)
    stored_mask[:4, :6] = 255  # over the red block of the stored pixels
    write_mask(root / "a.png", stored_mask)
    with pytest.warns(DatasetWarning, match=r"a.png: the mask has the image's stored size 12x8, not its displayed "
                                            r"size 8x12 \(EXIF orientation 6\); turned like the image"):
        sample = SaliencyDataset(root).load(0)
    assert sample.image.shape == (12, 8, 3)
    np.testing.assert_array_equal(sample.mask, np.rot90(stored_mask, k=-1) > 0)
    red = (sample.image[..., 0] > 200) & (sample.image[..., 1] < 60)
    assert (red == sample.mask).mean() > 0.9  # still over the red block (JPEG blurs its edges)


def test_cache_respects_its_byte_budget(tmp_path):
    root = make_msra_folder(tmp_path / "d")
    uncached = SaliencyDataset(root, cache_bytes=0)
    first = uncached.load(0)
    assert uncached.load(0) is not first
    cached = SaliencyDataset(root)
    assert cached.load(0) is cached.load(0)


# --- Splits -------------------------------------------------------------------------------------


MSRA_STEMS = [f"{number:04d}" for number in range(10000)]


def test_msra10k_split_counts_and_determinism():
    splits = data.split_msra10k(MSRA_STEMS, seed=3)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [8500, 500, 1000]
    assert set().union(*splits.values()) == set(MSRA_STEMS)
    assert splits == data.split_msra10k(list(reversed(MSRA_STEMS)), seed=3)  # order of input irrelevant
    assert splits != data.split_msra10k(MSRA_STEMS, seed=4)


def test_msra10k_split_with_a_test_list(tmp_path):
    held_out = MSRA_STEMS[::10]
    list_file = tmp_path / "msra1k.txt"
    list_file.write_text("# MSRA1K\n" + "\n".join(stem + ".jpg" for stem in held_out) + "\n\n")
    assert data.read_stem_list(list_file) == held_out
    splits = data.split_msra10k(MSRA_STEMS, test_stems=data.read_stem_list(list_file))
    assert splits["test"] == held_out
    assert len(splits["val"]) == 500 and len(splits["train"]) == 8500
    assert not set(splits["train"]) & set(held_out)


def test_msra10k_split_refuses_a_small_dataset():
    with pytest.raises(DatasetError, match="split_by_fractions"):
        data.split_msra10k(MSRA_STEMS[:100])


def test_split_by_fractions_adds_up_and_is_seeded():
    stems = [str(number) for number in range(101)]
    splits = data.split_by_fractions(stems, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [81, 10, 10]
    assert sorted(sum(splits.values(), [])) == sorted(stems)
    assert splits == data.split_by_fractions(stems, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    with pytest.raises(DatasetError, match="add up to 1"):
        data.split_by_fractions(stems, {"train": 0.8, "val": 0.1})


def test_split_from_lists(tmp_path):
    (tmp_path / "test.txt").write_text("b\nd\n")
    (tmp_path / "val.txt").write_text("a\n")
    splits = data.split_from_lists(["a", "b", "c", "d", "e"], {"test": tmp_path / "test.txt",
                                                               "val": tmp_path / "val.txt"}, remainder="train")
    assert splits == {"test": ["b", "d"], "val": ["a"], "train": ["c", "e"]}
    (tmp_path / "bad.txt").write_text("zz\n")
    with pytest.raises(DatasetError, match="not in the dataset"):
        data.split_from_lists(["a"], {"test": tmp_path / "bad.txt"})


def test_subset_shares_the_dataset_and_rejects_unknown_stems(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    subset = dataset.subset(["c", "a"])
    assert subset.stems == ["a", "c"] and subset.load(1).stem == "c"
    with pytest.raises(DatasetError, match="not usable pairs"):
        dataset.subset(["zz"])


# --- Augmentation and normalisation ---------------------------------------------------------------


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


# --- Training batches -----------------------------------------------------------------------------


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


# --- The synthetic set ----------------------------------------------------------------------------


def test_synthetic_set_is_deterministic_and_loadable(tmp_path):
    first = data.make_synthetic_dataset(tmp_path / "one", count=4, seed=3)
    second = data.make_synthetic_dataset(tmp_path / "two", count=4, seed=3)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    dataset = SaliencyDataset(first)
    assert dataset.layout == "MSRA10K" and len(dataset) == 4
    sizes = set()
    for index in range(4):
        sample = dataset.load(index)
        sizes.add(sample.image.shape[:2])
        assert 80 <= min(sample.image.shape[:2]) and max(sample.image.shape[:2]) <= 128
        assert 0.05 < sample.mask.mean() < 0.6
    assert len(sizes) > 1


def test_synthetic_set_is_reused_or_regenerated(tmp_path):
    root = data.make_synthetic_dataset(tmp_path / "s", count=2, seed=0)
    stamp = (root / "00000.jpg").stat().st_mtime_ns
    data.make_synthetic_dataset(root, count=2, seed=0)
    assert (root / "00000.jpg").stat().st_mtime_ns == stamp  # reused
    (root / data.synthetic_set._SYNTHETIC_MARKER).unlink()  # as if writing had been interrupted before the marker
    data.make_synthetic_dataset(root, count=2, seed=0)
    assert (root / data.synthetic_set._SYNTHETIC_MARKER).exists()
    (root / "mine.txt").write_text("not generated")
    (root / data.synthetic_set._SYNTHETIC_MARKER).unlink()
    with pytest.raises(DatasetError, match="holds files other than a synthetic set"):
        data.make_synthetic_dataset(root, count=2, seed=0)
    data.make_synthetic_dataset(tmp_path / "t", count=3, seed=0)
    data.make_synthetic_dataset(tmp_path / "t", count=2, seed=1)  # different parameters: regenerated
    assert sorted(path.name for path in (tmp_path / "t").glob("*.jpg")) == ["00000.jpg", "00001.jpg"]
    assert not list(tmp_path.glob(".*partial*"))


def test_default_synthetic_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMENET_DATA", str(tmp_path / "here"))
    assert data.default_synthetic_root() == tmp_path / "here"
    monkeypatch.delenv("MINIMENET_DATA")
    # The version is in the folder's name: a cache of the first generator (synthetic-v1) is never reused.
    assert data.SYNTHETIC_VERSION >= 2
    assert data.default_synthetic_root().name == f"synthetic-v{data.SYNTHETIC_VERSION}"


def test_each_seed_has_its_own_synthetic_folder(monkeypatch, tmp_path):
    # Runs with different seeds at once once rewrote one shared folder under each other.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MINIMENET_DATA", raising=False)
    roots = {seed: data.default_synthetic_root(seed) for seed in (0, 1, 2)}
    assert len(set(roots.values())) == 3 and roots[1].name == f"synthetic-v{data.SYNTHETIC_VERSION}-seed1"
    first = data.make_synthetic_dataset(count=3, seed=1, min_side=32, max_side=40)
    second = data.make_synthetic_dataset(count=3, seed=2, min_side=32, max_side=40)
    assert first == roots[1] and second == roots[2]
    assert (first / "00000.jpg").read_bytes() != (second / "00000.jpg").read_bytes()
    assert data.make_synthetic_dataset(count=3, seed=1, min_side=32, max_side=40) == first  # both still there


def test_a_set_of_an_older_generator_version_is_regenerated(tmp_path):
    root = data.make_synthetic_dataset(tmp_path / "s", count=2, seed=0)
    marker = json.loads((root / data.synthetic_set._SYNTHETIC_MARKER).read_text())
    assert marker["version"] == data.SYNTHETIC_VERSION
    fresh = {path.name: path.read_bytes() for path in root.iterdir()}
    # As an older minimenet left it: its own marker version and its own pictures.
    marker["version"] = 1
    (root / data.synthetic_set._SYNTHETIC_MARKER).write_text(json.dumps(marker))
    write_image(root / "00000.jpg", 90, 100)
    data.make_synthetic_dataset(root, count=2, seed=0)
    assert {path.name: path.read_bytes() for path in root.iterdir()} == fresh
    assert not list(tmp_path.glob(".*partial*"))


def test_synthetic_scenes_are_a_function_of_seed_and_index():
    image, mask, info = synthetic.synthesize_scene(5, 17)
    again = synthetic.synthesize_scene(5, 17)
    assert np.array_equal(image, again[0]) and np.array_equal(mask, again[1]) and info == again[2]
    sample = data.synthesize_sample(5, 17)  # what make_synthetic_dataset writes
    assert np.array_equal(sample[0], image) and np.array_equal(sample[1], mask)
    assert image.dtype == np.uint8 and image.shape == mask.shape + (3,) and mask.dtype == bool
    assert not np.array_equal(synthetic.synthesize_scene(6, 17)[1], mask) or \
        not np.array_equal(synthetic.synthesize_scene(6, 17)[0], image)
    assert all(synthetic.synthesize_sample(0, index, 40, 48)[1].any() for index in range(20))  # small sides work


def reached_from_the_border(free):
    """Pixels of ``free`` (bool) connected to the image border through ``free`` (4-neighbours)."""
    reach = np.zeros_like(free)
    reach[0], reach[-1], reach[:, 0], reach[:, -1] = free[0], free[-1], free[:, 0], free[:, -1]
    while True:
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= free
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def component_count(mask):
    """Number of 4-connected components of a bool mask (label propagation)."""
    labels = np.where(mask, np.arange(mask.size).reshape(mask.shape), mask.size)
    while True:
        smallest = labels.copy()
        smallest[1:] = np.minimum(smallest[1:], labels[:-1])
        smallest[:-1] = np.minimum(smallest[:-1], labels[1:])
        smallest[:, 1:] = np.minimum(smallest[:, 1:], labels[:, :-1])
        smallest[:, :-1] = np.minimum(smallest[:, :-1], labels[:, 1:])
        smallest = np.where(mask, smallest, mask.size)
        if np.array_equal(smallest, labels):
            return len(np.unique(labels[mask]))
        labels = smallest


@pytest.fixture(scope="module")
def scenes():
    return [synthetic.synthesize_scene(0, index) for index in range(200)]


def test_synthetic_scenes_draw_what_the_docs_claim(scenes):
    infos = [info for _, _, info in scenes]
    counts = np.array([len(info["objects"]) for info in infos])
    assert 0.5 < np.mean(counts == 1) < 0.8 and np.sum(counts >= 2) >= 40 and np.sum(counts >= 3) >= 10
    objects = [obj for info in infos for obj in info["objects"]]
    assert {obj["kind"] for obj in objects} == {"ellipse", "polygon", "star", "blob", "capsule", "creature"}
    assert sum(any(obj["hole"] for obj in info["objects"]) for info in infos) >= 25
    assert sum(any(obj["thin"] for obj in info["objects"]) for info in infos) >= 25
    assert sum(any(obj["shadow"] for obj in info["objects"]) for info in infos) >= 25
    backgrounds = [info["background"] for info in infos]
    assert all(backgrounds.count(kind) >= 25 for kind in synthetic.BACKGROUNDS)
    assert sum(info["clutter"] for info in infos) >= 50 and sum(info["defocus"] > 0 for info in infos) >= 40


def test_synthetic_masks_vary_in_size_position_and_topology(scenes):
    masks = [mask for _, mask, _ in scenes]
    fractions = np.array([mask.mean() for mask in masks])
    # Sizes like photographs' salient objects (median about a quarter), small ones included.
    assert np.all(fractions > 0) and np.percentile(fractions, 10) < 0.1 and fractions.min() < 0.03
    assert 0.12 < np.median(fractions) < 0.35 and np.percentile(fractions, 90) > 0.3
    touching = np.array([mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any() for mask in masks])
    assert 0.3 < touching.mean() < 0.85
    centres = np.array([np.argwhere(mask).mean(axis=0) / mask.shape for mask in masks])
    assert centres.std(axis=0).min() > 0.1  # not always in the middle
    # Holes show in the mask: background that the border cannot reach through the background.
    holes = sum((~mask & ~reached_from_the_border(~mask)).any() for mask in masks)
    assert holes >= 15
    assert sum(component_count(mask) >= 2 for mask in masks) >= 30


def test_synthetic_generation_is_fast():
    start = time.perf_counter()
    for index in range(100):
        synthetic.synthesize_sample(1, index)
    assert time.perf_counter() - start < 5  # about 0.5 s here: 1000 images in seconds


def test_transfer_generator_is_deterministic_and_writes_a_loadable_set(tmp_path):
    image, mask = synthesize_transfer_sample(3, 4)
    again = synthesize_transfer_sample(3, 4)
    assert np.array_equal(image, again[0]) and np.array_equal(mask, again[1]) and mask.any()
    assert not np.array_equal(synthesize_transfer_sample(4, 4)[0], image)
    first = make_transfer_dataset(tmp_path / "a", count=3, seed=1)
    second = make_transfer_dataset(tmp_path / "b", count=3, seed=1)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir()) and len(names) == 7
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    stamp = (first / "00000.jpg").stat().st_mtime_ns
    make_transfer_dataset(first, count=3, seed=1)
    assert (first / "00000.jpg").stat().st_mtime_ns == stamp  # reused
    dataset = SaliencyDataset(first)
    assert dataset.layout == "MSRA10K" and len(dataset) == 3
    make_transfer_dataset(first, count=2, seed=1)  # other parameters: rewritten
    assert sorted(path.name for path in first.glob("*.jpg")) == ["00000.jpg", "00001.jpg"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not generated")
    with pytest.raises(ValueError, match="other than a transfer set"):
        make_transfer_dataset(tmp_path / "mine", count=2)


def test_transfer_set_draws_several_small_objects_with_holes():
    masks = [synthesize_transfer_sample(0, index)[1] for index in range(100)]
    fractions = np.array([mask.mean() for mask in masks])
    assert np.all(fractions > 0) and np.percentile(fractions, 25) < 0.04 and np.median(fractions) < 0.15
    assert sum(component_count(mask) >= 2 for mask in masks) >= 25
    assert sum((~mask & ~reached_from_the_border(~mask)).any() for mask in masks) >= 15


# --- Benchmark folders as they are downloaded -----------------------------------------------------


def make_pair_folders(root, image_folder, mask_folder, stems=("0001", "0002", "0003"),
                      image_suffix=".jpg", mask_suffix=".png"):
    (root / image_folder).mkdir(parents=True)
    (root / mask_folder).mkdir(parents=True)
    for number, stem in enumerate(stems):
        write_image(root / image_folder / f"{stem}{image_suffix}", seed=number)
        write_mask(root / mask_folder / f"{stem}{mask_suffix}", square_mask())
    return root


@pytest.mark.parametrize("layout, image_folder, mask_folder, image_suffix", [
    ("DUTS-TR", "DUTS-TR-Image", "DUTS-TR-Mask", ".jpg"),
    ("DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask", ".jpg"),
    ("ECSSD", "images", "ground_truth_mask", ".jpg"),
    ("HKU-IS", "imgs", "gt", ".png"),  # HKU-IS ships its photographs as PNG
    ("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG", ".jpg"),
    ("PASCAL-S", "Imgs", "Masks", ".jpg"),
    ("PASCAL-S", "imgs/pascal", "masks/pascal", ".jpg"),  # the authors' salObj/datasets folder
    ("image/ + mask/", "image", "mask", ".jpg"),  # PASCAL-S, SOD and others in several repositories
    ("Imgs/ + GT/", "Imgs", "GT", ".jpg"),  # SOD
    ("split", "images", "masks", ".jpg"),  # the built-in name, and ../shared/data/sod200
])
def test_benchmark_split_layouts_are_detected_and_paired(tmp_path, layout, image_folder, mask_folder, image_suffix):
    root = make_pair_folders(tmp_path / "bench", image_folder, mask_folder, image_suffix=image_suffix)
    write_image(root / image_folder / f"only_image{image_suffix}")  # unpaired files are still left out
    (root / "readme.txt").write_text("benchmark notes")
    dataset = quiet_dataset(root)
    assert dataset.layout == layout and layout in dataset.summary()
    assert dataset.stems == ["0001", "0002", "0003"] and dataset.unpaired_images == ["only_image"]
    pair = dataset.samples[1]
    assert pair.image == root / image_folder / f"0002{image_suffix}" and pair.mask == root / mask_folder / "0002.png"
    assert dataset.load(0).mask.sum() == 20


def test_msra10k_zip_and_msra_b_flat_folders(tmp_path):
    # MSRA10K_Imgs_GT.zip unpacks to MSRA10K_Imgs_GT/Imgs/ holding NAME.jpg and NAME.png (and a
    # Readme.txt beside Imgs/); MSRA-B and the flat ECSSD/SOD copies are one folder of both.
    zipped = tmp_path / "MSRA10K_Imgs_GT"
    zipped.mkdir()
    make_msra_folder(zipped / "Imgs", stems=("75", "76"))
    (zipped / "Readme.txt").write_text("MSRA10K")
    dataset = SaliencyDataset(zipped)
    assert dataset.layout == "MSRA10K (Imgs/)" and dataset.stems == ["75", "76"]
    assert dataset.samples[0].image == zipped / "Imgs" / "75.jpg"
    flat = SaliencyDataset(make_msra_folder(tmp_path / "MSRA-B", stems=("0_1_1339", "0_2_2")))
    assert flat.layout == "MSRA10K" and flat.stems == ["0_1_1339", "0_2_2"]


def test_a_named_pair_of_folders_wins_over_a_generic_one(tmp_path):
    # ECSSD unpacked beside an unrelated, empty gt/ folder: images/ + ground_truth_mask/ is used.
    root = make_pair_folders(tmp_path / "ECSSD", "images", "ground_truth_mask", stems=("0001",))
    (root / "gt").mkdir()
    dataset = SaliencyDataset(root)
    assert dataset.layout == "ECSSD" and dataset.stems == ["0001"]


def test_image_and_mask_folders_with_no_names_in_common_are_explained(tmp_path):
    root = tmp_path / "d"
    make_pair_folders(root, "Imgs", "GT", stems=("a",))
    (root / "GT" / "a.png").rename(root / "GT" / "a_gt.png")
    with pytest.raises(DatasetError) as error:
        SaliencyDataset(root)
    message = str(error.value)
    assert "no image-mask pairs" in message and "Imgs/ and GT/" in message and "accepted layouts" in message
    assert "DUTS-TE-Image/" in message and "ground_truth_mask/" in message
