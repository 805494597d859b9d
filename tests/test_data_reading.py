"""minimenet/data/reading.py: damaged files, decoding rules, mask encodings, high bit depth images and
EXIF orientation."""
import warnings

import numpy as np
import pytest
from PIL import Image

from minimenet import data
from minimenet.data import DatasetError, DatasetWarning, SaliencyDataset, TrainingBatches

from conftest import make_msra_folder, quiet_dataset, square_mask, write_image, write_mask


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
