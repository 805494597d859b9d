"""A folder of good pairs mixed with traps runs through train, evaluate and predict with no
traceback and no silent mislabel (issue 9's acceptance corpus).

Traps: corrupt, truncated and empty files, orphans on both sides, grey, CMYK, 16-bit and float
images, an image too large to decode safely, masks stored as 0/1, 0/255, 16-bit, RGB, alpha-only
and VOC palette, all-salient and all-background masks, and odd file names.
"""
import io
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet.data import SaliencyDataset

ROOT = Path(__file__).resolve().parents[1]


def scene(seed, size=(48, 64)):
    """An RGB image with a bright ellipse on a darker textured ground, and the ellipse's mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size[0], :size[1]]
    inside = ((yy - size[0] / 2) / (size[0] / 3)) ** 2 + ((xx - size[1] / 2 - seed % 5) / (size[1] / 4)) ** 2 < 1
    image = rng.integers(20, 90, size + (3,)).astype(np.uint8)
    image[inside] = [220, 180 - 10 * (seed % 4), 60]
    return image, inside


def png_with_header_size(path, width, height):
    """A PNG whose header claims width x height (Pillow's decompression-bomb guard refuses it on open)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    expected_objects = {}       # stem -> True (an object), "all" or "none"

    def pair(stem, seed, image_mode="RGB", mask_encoding="255", image_suffix=".jpg"):
        image, inside = scene(seed)
        picture = Image.fromarray(image)
        if image_mode == "L":
            picture = picture.convert("L")
        elif image_mode == "CMYK":
            picture = picture.convert("CMYK")
        elif image_mode == "I;16":
            picture = Image.fromarray((image.mean(axis=2) * 257).astype(np.uint16))
        elif image_mode == "F":
            picture = Image.fromarray((image.mean(axis=2) / 255).astype(np.float32))
        picture.save(images / f"{stem}{image_suffix}")
        if mask_encoding == "01":
            mask = Image.fromarray(inside.astype(np.uint8))
        elif mask_encoding == "16bit":
            mask = Image.fromarray(inside.astype(np.uint16) * 65535)
        elif mask_encoding == "rgb":
            mask = Image.fromarray(np.stack([inside * 200] * 3, axis=-1).astype(np.uint8))
        elif mask_encoding == "alpha":
            rgba = np.zeros(inside.shape + (4,), np.uint8)
            rgba[..., 3] = inside * 255
            mask = Image.fromarray(rgba, "RGBA")
        elif mask_encoding == "palette":
            mask = Image.fromarray(inside.astype(np.uint8), "P")
            mask.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
        else:
            mask = Image.fromarray(inside.astype(np.uint8) * 255)
        mask.save(masks / f"{stem}.png")
        expected_objects[stem] = True

    for k in range(8):
        pair(f"good_{k}", k)
    pair("grey", 11, image_mode="L")
    pair("cmyk", 12, image_mode="CMYK")
    pair("deep", 13, image_mode="I;16", image_suffix=".png")
    pair("float", 14, image_mode="F", image_suffix=".tif")
    pair("mask01", 15, mask_encoding="01")
    pair("mask16", 16, mask_encoding="16bit")
    pair("maskrgb", 17, mask_encoding="rgb")
    pair("maskalpha", 18, mask_encoding="alpha")
    pair("maskpalette", 19, mask_encoding="palette")
    pair("odd name é", 20)
    pair("dotted.name", 21)
    image, _ = scene(22)
    Image.fromarray(image).save(images / "allsalient.jpg")
    Image.fromarray(np.full(image.shape[:2], 255, np.uint8)).save(masks / "allsalient.png")
    expected_objects["allsalient"] = "all"
    Image.fromarray(image).save(images / "allbackground.jpg")
    Image.fromarray(np.zeros(image.shape[:2], np.uint8)).save(masks / "allbackground.png")
    expected_objects["allbackground"] = "none"

    # Traps that must be skipped and reported.
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    Image.fromarray(scene(30)[1].astype(np.uint8) * 255).save(masks / "corrupt.png")
    whole = io.BytesIO()
    Image.fromarray(scene(31)[0]).save(whole, format="JPEG")
    (images / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    Image.fromarray(scene(31)[1].astype(np.uint8) * 255).save(masks / "truncated.png")
    (images / "empty.jpg").write_bytes(b"")
    Image.fromarray(scene(32)[1].astype(np.uint8) * 255).save(masks / "empty.png")
    png_with_header_size(images / "huge.png", 30000, 30000)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / "huge.png")
    Image.fromarray(scene(33)[0]).save(images / "orphan_image.jpg")
    Image.fromarray(scene(34)[1].astype(np.uint8) * 255).save(masks / "orphan_mask.png")
    return root, expected_objects


def test_every_trap_is_read_as_it_should_be(corpus):
    root, expected = corpus
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        dataset = SaliencyDataset(root)
        loaded = {}
        for index, stem in enumerate(dataset.stems):
            sample = dataset.load(index)
            if sample is not None:
                loaded[stem] = sample
    assert set(loaded) == set(expected), dataset.summary()
    for stem, sample in loaded.items():
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
        assert sample.image.std() > 5, f"{stem}: the image lost its content"
        if expected[stem] is True:
            assert 0.05 < sample.mask.mean() < 0.6, f"{stem}: the mask was read as {sample.mask.mean():.2f} salient"
        elif expected[stem] == "all":
            assert sample.mask.all()
        else:
            assert not sample.mask.any()
    skipped = {Path(s.path).stem for s in dataset.skipped}
    assert {"corrupt", "truncated", "empty", "huge"} <= skipped
    assert [Path(p).stem for p in dataset.unpaired_images] == ["orphan_image"]
    assert [Path(p).stem for p in dataset.unpaired_masks] == ["orphan_mask"]


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_train_evaluate_and_predict_run_through_the_corpus_without_a_traceback(corpus, tmp_path):
    root, expected = corpus
    trained = run("train_msra10k.py", "--data", root, "--out", tmp_path / "run", "--image-size", 32, "--width", 2,
                  "--iterations", 3, "--batch-size", 4, "--val-count", 3, "--test-count", 4)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    evaluated = run("evaluate.py", checkpoint, root, "--out", tmp_path / "eval")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "Traceback" not in evaluated.stderr
    import json
    table = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert table["corpus0"]["images"] == len(expected)
    predicted = run("predict.py", checkpoint, root / "images", "--out", tmp_path / "maps")
    assert "Traceback" not in predicted.stderr
    assert predicted.returncode == 1 and "4 of" in predicted.stderr     # corrupt, truncated, empty, huge
    for name in ("corrupt", "truncated", "empty", "huge"):
        assert name in predicted.stderr
    written = {p.name.rsplit("_", 1)[0] for p in (tmp_path / "maps").glob("*_ce.png")}
    assert len(written) == len(expected) + 1                              # + the orphan image
