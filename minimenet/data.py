"""Salient-object datasets: folder loading, splits, augmentation, batches and a synthetic default set.

Layouts (detected automatically, nothing renamed; images and masks paired by file stem; the layout
found is ``dataset.layout`` and is named in ``dataset.summary()``), tried in this order:

* An image folder beside a mask folder (images .jpg/.jpeg/.png/.bmp/.tif, masks .png/.bmp/.jpg/.tif),
  first under the benchmarks' own names (exact case), each with its layout name: ``images/`` +
  ``masks/`` ("split"), ``DUTS-TR-Image/`` + ``DUTS-TR-Mask/`` ("DUTS-TR"), ``DUTS-TE-Image/`` +
  ``DUTS-TE-Mask/`` ("DUTS-TE"), ``images/`` + ``ground_truth_mask/`` ("ECSSD"), ``imgs/`` + ``gt/``
  ("HKU-IS"), ``DUT-OMRON-image/`` + ``pixelwiseGT-new-PNG/`` ("DUT-OMRON"), ``imgs/pascal/`` +
  ``masks/pascal/`` (PASCAL-S's salObj/datasets folder) and ``Imgs/`` + ``Masks/`` ("PASCAL-S");
  then any of images, image, imgs, img, im, rgb, JPEGImages beside any of masks, mask, gt, gts,
  ground_truth, ground_truth_mask, groundtruth, annotation(s), label(s), SegmentationObject (any
  case; layout named after the two folders, e.g. "Imgs/ + GT/" for SOD, "image/ + mask/").
* MSRA10K: ``NAME.jpg`` beside ``NAME.png`` in one folder (images .jpg/.jpeg/.bmp, masks .png), as
  MSRA10K, MSRA-B and the flat ECSSD/SOD copies of several repositories ship them ("MSRA10K"), or in
  its ``Imgs/`` (``images/``, ``image/``) subfolder, as MSRA10K_Imgs_GT.zip unpacks ("MSRA10K (Imgs/)").

Validation happens in two stages. At construction every file is checked eagerly and cheaply: a
zero-byte file, garbage bytes or a corrupt PNG chunk is caught by ``PIL.Image.open`` plus
``verify()`` (headers and checksums, no pixel decoding; a few seconds for 10 000 pairs). A JPEG
truncated in its pixel data passes that check and fails only when decoded, so decoding failures are
caught lazily in ``SaliencyDataset.load``, which then returns None; the training sampler simply
moves on to the next item of its shuffled order, and evaluation leaves the image out. Both stages
record the file in ``dataset.skipped`` and ``dataset.summary()`` counts them.

Loading (``read_image``, ``read_mask``): every file is first turned by its own EXIF orientation
tag, as a viewer displays it (what ``PIL.ImageOps.exif_transpose`` does). Images become uint8 RGB:
grey, palette and RGBA are converted (alpha is dropped); a 16-bit grey image is scaled from
0..65535 to 0..255 (divided by 257); a float image (TIFF) by the 0-1 convention when its values lie
in [0, 1] (x 255), otherwise stretched from its own minimum to its maximum.

Masks are read into one channel of values, then binarised by ``binarize_mask``, the rule that
``minimenet.metrics`` uses too:

* reading: grey (8- or 16-bit, float) as stored; RGB by the brightest channel of each pixel; a
  mask whose colour is one flat value and whose alpha channel varies by its alpha (the object drawn
  only in alpha); a palette mask whose colours are all grey by those grey levels, and any other
  palette mask (a coloured index mask, e.g. VOC's with index 1 = (128, 0, 0)) as non-black = salient;
* binarising: only values 0 and 1 are labels (1 is salient); exactly two values, one of them 0
  (0/255, 0/65535, ...), make the other salient; anything else is a grey image, salient where
  > 128 on the 8-bit scale (PySODMetrics' rule), i.e. > 32896 when a value exceeds 255 (16-bit)
  and > 128/255 for a float mask within [0, 1].

A mask that comes out empty or all salient although its file holds more than one value is loaded
with a ``DatasetWarning`` (its encoding was probably not understood). Masks carry EXIF orientation
rarely, but when one does it is applied like an image's. A mask with the stored (unturned) size of
an image whose orientation swaps width and height was drawn on the stored pixels and is turned
like the image, with a warning; after a 180-degree turn or a mirror the sizes cannot tell, and the
mask is taken as drawn on the displayed image. Any other mask whose size differs from its image's
is resized to the image's size (nearest neighbour) with a warning.

Network input: raw 0-255 RGB as float32, channels first, with no mean subtraction, as the authors
feed their network (the batch norms on the image's scale map and after the stem's first
convolution do the scaling).

Training augmentation (the paper's "cropping and flipping images randomly", as the authors' data
layer does it): a crop box whose height and width are each drawn uniformly from 90-100 % of the image's (``CROP_SCALE``), at a
uniformly random position; a horizontal flip with probability 0.5; then a resize to S x S, bilinear
for the image and nearest neighbour for the mask. Evaluation resizes the whole image to S x S and
keeps the mask at its original size, so that predicted maps are resized back
(``resize_saliency_map``) and scored at full resolution, as the benchmarks do.
"""
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CROP_SCALE = (0.9, 1.0)
FLIP_PROBABILITY = 0.5
MASK_THRESHOLD = 128
# Decoded images are cached as uint8 up to this many bytes: all of MSRA10K decoded is about
# 4 GB, the default synthetic set about 40 MB.
DEFAULT_CACHE_BYTES = 2 * 1024 ** 3

MSRA10K_TRAIN_COUNT = 8500
MSRA10K_VALIDATION_COUNT = 500

_MSRA10K_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".bmp")
_MSRA10K_MASK_EXTENSIONS = (".png",)
_SPLIT_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_SPLIT_MASK_EXTENSIONS = (".png", ".bmp", ".jpg", ".tif", ".tiff")
# Image and mask folders as the benchmarks ship them: (layout name, image folder, mask folder),
# matched without regard to case; the first that is present wins. Named ones come first.
_NAMED_SPLIT_LAYOUTS = (
    ("split", "images", "masks"),
    ("DUTS-TR", "DUTS-TR-Image", "DUTS-TR-Mask"),
    ("DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask"),
    ("ECSSD", "images", "ground_truth_mask"),
    ("HKU-IS", "imgs", "gt"),
    ("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG"),
    ("DUT-OMRON", "DUT-OMRON-image", "DUT-OMRON-gt-pixelwise"),
    ("PASCAL-S", "imgs/pascal", "masks/pascal"),  # the authors' salObj/datasets folder
    ("PASCAL-S", "Imgs", "Masks"),
)
# Other common names; any image folder pairs with any mask folder.
_IMAGE_FOLDER_NAMES = ("images", "image", "imgs", "img", "im", "rgb", "jpegimages")
_MASK_FOLDER_NAMES = ("masks", "mask", "gt", "gts", "ground_truth", "ground_truth_mask", "groundtruth",
                      "annotation", "annotations", "labels", "label", "segmentationobject")
# Folders that hold NAME.jpg beside NAME.png, as MSRA10K's zip (MSRA10K_Imgs_GT/Imgs/) and the
# MSRA-B, ECSSD, HKU-IS, PASCAL-S and SOD copies of several saliency repositories ship them.
_FLAT_SUBFOLDER_NAMES = ("imgs", "images", "image")
_LAYOUTS_ACCEPTED = (
    "accepted layouts: MSRA10K (NAME.jpg beside NAME.png in one folder, or in its Imgs/ subfolder) or "
    "an image folder beside a mask folder, paired by file name: images/ + masks/, DUTS-TR-Image/ + DUTS-TR-Mask/, "
    "DUTS-TE-Image/ + DUTS-TE-Mask/, images/ + ground_truth_mask/ (ECSSD), imgs/ + gt/ (HKU-IS), "
    "DUT-OMRON-image/ + pixelwiseGT-new-PNG/, Imgs/ + Masks/ or image/ + mask/ (PASCAL-S), Imgs/ + GT/ (SOD), "
    "and other pairs of the names images, image, imgs, img, im and masks, mask, gt, gts, ground_truth, annotation"
    " (images .jpg/.jpeg/.png/.bmp/.tif, masks .png/.bmp/.jpg/.tif)")
_EXAMPLES_SHOWN = 5

# Independent random streams derived from one seed, told apart by their second seed word.
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


class DatasetError(ValueError):
    """A dataset folder, split or list that cannot be used as it is."""


class DatasetWarning(UserWarning):
    """Something in a dataset was left out or repaired; loading goes on."""


@dataclass(frozen=True)
class SamplePaths:
    stem: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class Sample:
    stem: str
    image: np.ndarray  # uint8 (H, W, 3) RGB
    mask: np.ndarray  # bool (H, W), True = salient


def _examples(names):
    names = sorted(names)
    shown = ", ".join(names[:_EXAMPLES_SHOWN])
    return shown + (", ..." if len(names) > _EXAMPLES_SHOWN else "")


def _files_by_stem(folder, extensions):
    """{stem: path} of the files in ``folder`` with one of ``extensions`` (earlier ones win a tie)."""
    found = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.is_file() and suffix in extensions:
            best = found.get(path.stem)
            if best is None or extensions.index(suffix) < extensions.index(best.suffix.lower()):
                found[path.stem] = path
    return found


def _describe_contents(root):
    entries = sorted(root.iterdir())
    folders = [entry.name + "/" for entry in entries if entry.is_dir()]
    files = [entry for entry in entries if entry.is_file()]
    suffixes = sorted({entry.suffix.lower() or "(no extension)" for entry in files})
    return (f"found {len(files)} files (extensions: {', '.join(suffixes) or 'none'}) "
            f"and {len(folders)} folders ({_examples(folders) or 'none'})")


def _scan_layout(root):
    """(layout name, {stem: image path}, {stem: mask path}) for a dataset folder (see the module doc)."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if not any(root.iterdir()):
        raise DatasetError(f"dataset folder {root} is empty; {_LAYOUTS_ACCEPTED}")
    # 1. An image folder beside a mask folder: the benchmarks' own names (exact), then common names.
    for layout, image_name, mask_name in _NAMED_SPLIT_LAYOUTS:
        image_folder, mask_folder = root / image_name, root / mask_name
        if image_folder.is_dir() and mask_folder.is_dir() and image_folder.name == Path(image_name).name:
            images = _files_by_stem(image_folder, _SPLIT_IMAGE_EXTENSIONS)
            masks = _files_by_stem(mask_folder, _SPLIT_MASK_EXTENSIONS)
            if images.keys() & masks.keys() or layout == "split":
                return _checked_pairs(root, layout, images, masks)
    folders = sorted(entry for entry in root.iterdir() if entry.is_dir())
    image_folders = sorted((folder for folder in folders if folder.name.lower() in _IMAGE_FOLDER_NAMES),
                           key=lambda folder: _IMAGE_FOLDER_NAMES.index(folder.name.lower()))
    mask_folders = sorted((folder for folder in folders if folder.name.lower() in _MASK_FOLDER_NAMES),
                          key=lambda folder: _MASK_FOLDER_NAMES.index(folder.name.lower()))
    for image_folder in image_folders:
        for mask_folder in mask_folders:
            images = _files_by_stem(image_folder, _SPLIT_IMAGE_EXTENSIONS)
            masks = _files_by_stem(mask_folder, _SPLIT_MASK_EXTENSIONS)
            if images.keys() & masks.keys():
                return _checked_pairs(root, f"{image_folder.name}/ + {mask_folder.name}/", images, masks)
    # 2. NAME.jpg beside NAME.png, in the folder itself or in its Imgs/ (images/, image/) subfolder.
    images = _files_by_stem(root, _MSRA10K_IMAGE_EXTENSIONS)
    masks = _files_by_stem(root, _MSRA10K_MASK_EXTENSIONS)
    if images.keys() & masks.keys() or not folders:
        return _checked_pairs(root, "MSRA10K", images, masks)
    for folder in folders:
        if folder.name.lower() in _FLAT_SUBFOLDER_NAMES:
            inner_images = _files_by_stem(folder, _MSRA10K_IMAGE_EXTENSIONS)
            inner_masks = _files_by_stem(folder, _MSRA10K_MASK_EXTENSIONS)
            if inner_images.keys() & inner_masks.keys():
                return _checked_pairs(root, f"MSRA10K ({folder.name}/)", inner_images, inner_masks)
    if image_folders or mask_folders:
        if image_folders and mask_folders:
            found = f"has {image_folders[0].name}/ and {mask_folders[0].name}/ but no file names in common"
        elif image_folders:
            found = (f"has {image_folders[0].name}/ but no masks/ (or other mask folder) subfolder, "
                     f"and no NAME.jpg beside NAME.png in {image_folders[0].name}/")
        else:
            found = f"has {mask_folders[0].name}/ but no images/ (or other image folder) subfolder"
        raise DatasetError(f"no image-mask pairs in {root}: it {found}; {_describe_contents(root)}; {_LAYOUTS_ACCEPTED}")
    return _checked_pairs(root, "MSRA10K", images, masks)


def _checked_pairs(root, layout, images, masks):
    if not images.keys() & masks.keys():
        raise DatasetError(
            f"no image-mask pairs in {root} (read as the {layout} layout: {len(images)} images, {len(masks)} masks); "
            f"{_describe_contents(root)}; {_LAYOUTS_ACCEPTED}")
    return layout, images, masks


def _verification_failure(path):
    """Why ``path`` is not a readable image (cheap header and checksum check), or None if it looks fine."""
    if path.stat().st_size == 0:
        return "empty (zero-byte) file"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) on bad bytes
        return f"not a readable image ({type(error).__name__}: {error})"
    return None


# --- Reading images and masks -------------------------------------------------------------------

_TRANSPOSE = getattr(Image, "Transpose", Image)  # Pillow >= 9.1 has the enum; older ones the constants
# PIL's transposes for the EXIF orientation tag 2..8 (the table ImageOps.exif_transpose uses).
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TRANSPOSES = {
    2: _TRANSPOSE.FLIP_LEFT_RIGHT, 3: _TRANSPOSE.ROTATE_180, 4: _TRANSPOSE.FLIP_TOP_BOTTOM,
    5: _TRANSPOSE.TRANSPOSE, 6: _TRANSPOSE.ROTATE_270, 7: _TRANSPOSE.TRANSVERSE,
    8: _TRANSPOSE.ROTATE_90}
_SIDE_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_SIXTEEN_BIT_MAX = 65535
# A grey mask is salient where its value is > 128 on the 8-bit scale (PySODMetrics' rule); on the
# 16-bit scale that is > 128 * 257 (257 = 65535 / 255), on the 0-1 float scale > 128 / 255.
_MASK_THRESHOLD_16_BIT = MASK_THRESHOLD * 257


def _exif_orientation(image):
    """The EXIF orientation tag (1-8) of an open image; 1 (as stored) when absent or unreadable."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make a readable image unreadable
        return 1
    return orientation if orientation in _ORIENTATION_TRANSPOSES else 1


def _oriented(image):
    """``image`` turned the way a viewer displays it, by its own EXIF orientation, and that orientation."""
    orientation = _exif_orientation(image)
    if orientation == 1:
        return image, 1
    return image.transpose(_ORIENTATION_TRANSPOSES[orientation]), orientation


def _float_to_uint8(values):
    """A float image as uint8: values within [0, 1] by the 0-1 convention (x 255), any other range
    stretched from its own minimum to its maximum; NaN and infinities become 0."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = values[finite].min(), values[finite].max()
    if low >= 0 and high <= 1:
        scaled = values * 255
    elif high > low:
        scaled = (values - low) / (high - low) * 255
    else:  # a constant outside [0, 1]: nothing to stretch
        scaled = np.clip(values, 0, 255)
    scaled[~finite] = 0
    return np.rint(scaled).astype(np.uint8)


def _sixteen_bit_to_uint8(values):
    """A 16-bit (or 32-bit integer) grey image as uint8: 0..65535 maps onto 0..255 (divided by 257);
    a 32-bit image with values outside 0..65535 is stretched by its own range instead."""
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > _SIXTEEN_BIT_MAX):
        return _float_to_uint8(values.astype(np.float64))
    return np.rint(values / 257).astype(np.uint8)


def _rgb_uint8(image):
    """Any PIL image as uint8 (H, W, 3) RGB, high-bit-depth grey scaled rather than clipped."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        # PIL's convert("RGB") clips these at 255: a 16-bit photo would come out all white and a
        # 0-1 float image all black.
        values = np.asarray(image)
        grey = _float_to_uint8(values) if image.mode == "F" else _sixteen_bit_to_uint8(values)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def read_image(path):
    """An image file as uint8 (H, W, 3) RGB in its displayed orientation (see the module doc)."""
    return _read_image_and_orientation(path)[0]


def _read_image_and_orientation(path):
    with Image.open(path) as image:
        oriented, orientation = _oriented(image)
        return _rgb_uint8(oriented), orientation


_read_image = read_image


def binarize_mask(values):
    """A mask array as bool (True = salient), by the one rule that loading and metrics share:

    * bool: as it is;
    * only the values 0 and 1 (or all 1): a label map, 1 is salient;
    * exactly two values, one of them 0 (0/255, 0/65535, a dim 0/100): the other value is salient;
    * anything else is a grey image, salient where > 128 on the 8-bit scale (PySODMetrics' rule):
      > 32896 (128 x 257) when a value exceeds 255 (a 16-bit mask), > 128 / 255 for a float mask
      within [0, 1].
    """
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"a mask must be bool, integer or float, got {values.dtype}")
    if values.size == 0:
        return np.zeros(values.shape, bool)
    low, high = values.min(), values.max()
    if np.issubdtype(values.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("the mask contains NaN or infinite values")
    if high > 0 and (low == 0 or low == high == 1) and np.all((values == low) | (values == high)):
        return values == high  # a two-valued mask in any encoding: labels, 0/255, 16-bit, a palette's indices
    if high > 255:
        threshold = _MASK_THRESHOLD_16_BIT
    elif np.issubdtype(values.dtype, np.floating) and high <= 1:
        threshold = MASK_THRESHOLD / 255
    else:
        threshold = MASK_THRESHOLD
    return values > threshold


def _palette_mask_values(image):
    """A palette mask as grey levels (all its colours grey) or as bool, non-black = salient (a
    coloured index mask such as VOC's, whose object colours, e.g. (128, 0, 0), are dark)."""
    indices = np.asarray(image)
    palette = np.zeros((256, 3), np.uint8)
    entries = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    palette[:len(entries)] = entries  # indices beyond the stored palette are black, as PIL shows them
    colours = palette[indices]
    used = palette[np.unique(indices)]
    if np.all((used[:, 0] == used[:, 1]) & (used[:, 1] == used[:, 2])):
        return colours[..., 0]  # a grey mask that a PNG optimiser stored as a palette
    return colours.any(axis=-1)


def _mask_values(image):
    """The one-channel values a mask's salient pixels are read from (before ``binarize_mask``)."""
    mode = image.mode
    if mode == "P" and "transparency" not in image.info:
        return _palette_mask_values(image)
    if mode in ("1", "L") or mode in _SIXTEEN_BIT_MODES or mode == "F":
        return np.asarray(image)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    # A coloured object on black counts by its brightest channel (luma would make a pure dark red
    # object dim); a grey mask is the same either way.
    colour = pixels[..., :3].max(axis=-1)
    if has_alpha:
        alpha = pixels[..., 3]
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return alpha  # the object is drawn only in the alpha channel
    return colour


def read_mask(path):
    """A mask file as bool (H, W), True = salient, in its displayed orientation (see the module doc).

    Warns (DatasetWarning) when the mask comes out empty or full although the file holds more
    than one value: its encoding was probably not understood.
    """
    with Image.open(path) as image:
        oriented, _ = _oriented(image)
        values = _mask_values(oriented)
    mask = binarize_mask(values)
    if values.size and values.min() != values.max() and not (mask.any() and not mask.all()):
        warnings.warn(f"{path}: the mask comes out {'all salient' if mask.all() else 'empty'} although the file holds "
                      f"values from {values.min()} to {values.max()}; check its encoding (minimenet.data reads "
                      "0/1 labels, 0/255, 16-bit, alpha and palette masks; see the module doc)",
                      DatasetWarning, stacklevel=2)
    return mask


_read_mask = read_mask


def _mask_in_image_orientation(mask, image_shape, orientation, mask_path):
    """``mask`` turned like its image when its size shows it was drawn on the image's stored pixels.

    Only a side-swapping orientation (a 90-degree turn) can be told apart: the mask then has the
    stored height and width, swapped against the displayed image's. After a 180-degree turn or a
    mirror the sizes agree, and the mask is taken as drawn on the displayed image.
    """
    if orientation not in _SIDE_SWAPPING_ORIENTATIONS or mask.shape == image_shape or mask.shape != image_shape[::-1]:
        return mask
    warnings.warn(f"{mask_path}: the mask has the image's stored size {mask.shape[1]}x{mask.shape[0]}, not its displayed "
                  f"size {image_shape[1]}x{image_shape[0]} (EXIF orientation {orientation}); turned like the image",
                  DatasetWarning, stacklevel=3)
    return np.asarray(Image.fromarray(mask).transpose(_ORIENTATION_TRANSPOSES[orientation]))


class _SharedLoadState:
    """Cache and failure records shared by a dataset and the subsets made from it."""

    def __init__(self, cache_bytes):
        self.cache_budget = cache_bytes
        self.cached_bytes = 0
        self.cache = {}  # stem -> Sample
        self.skipped = []  # SkippedFile, in the order found
        self.unreadable_stems = set()


class SaliencyDataset:
    """Image-mask pairs of a folder in any layout the module doc lists (``layout`` names the one found).

    ``samples`` lists the usable pairs sorted by stem; ``skipped``, ``unpaired_images`` and
    ``unpaired_masks`` what was left out. ``load(index)`` decodes a pair (cached in memory as uint8
    up to ``cache_bytes``); ``subset(stems)`` restricts to a split while sharing that cache.
    """

    def __init__(self, root, *, verify=True, cache_bytes=DEFAULT_CACHE_BYTES):
        self.root = Path(root)
        self.layout, images, masks = _scan_layout(self.root)
        self.unpaired_images = sorted(images.keys() - masks.keys())
        self.unpaired_masks = sorted(masks.keys() - images.keys())
        for stems, kind, missing in ((self.unpaired_images, "images have", "mask"),
                                     (self.unpaired_masks, "masks have", "image")):
            if stems:
                warnings.warn(f"{self.root}: {len(stems)} {kind} no {missing} and are left out ({_examples(stems)})",
                              DatasetWarning, stacklevel=2)
        self._state = _SharedLoadState(cache_bytes)
        self.samples = []
        for stem in sorted(images.keys() & masks.keys()):
            pair = SamplePaths(stem, images[stem], masks[stem])
            failures = [(path, _verification_failure(path)) for path in (pair.image, pair.mask)] if verify else []
            failures = [SkippedFile(path, reason) for path, reason in failures if reason is not None]
            if failures:
                self._state.skipped.extend(failures)
            else:
                self.samples.append(pair)
        if self._state.skipped:
            warnings.warn(self._skipped_message(), DatasetWarning, stacklevel=2)
        if not self.samples:
            raise DatasetError(f"none of the image-mask pairs in {self.root} could be read; {self._skipped_message()}")

    def _skipped_message(self):
        skipped = self._state.skipped
        return (f"{self.root}: skipped {len(skipped)} unreadable files "
                f"({_examples(f'{entry.path.name} ({entry.reason})' for entry in skipped)})")

    @property
    def skipped(self):
        """SkippedFile records of the unreadable files found so far (at construction or when loading)."""
        return list(self._state.skipped)

    @property
    def stems(self):
        return [pair.stem for pair in self.samples]

    def __len__(self):
        return len(self.samples)

    def summary(self, pairs=None):
        """One line: layout, usable pairs (``pairs``, e.g. a whole folder's for a split, or this
        set's) and what was left out."""
        return (f"{self.root} ({self.layout} layout): {len(self) if pairs is None else pairs} pairs; {len(self._state.skipped)} unreadable files "
                f"skipped; {len(self.unpaired_images)} images without mask, {len(self.unpaired_masks)} masks without image")

    def subset(self, stems):
        """The pairs named by ``stems`` (e.g. one split), sharing this dataset's cache and skip records."""
        by_stem = {pair.stem: pair for pair in self.samples}
        unknown = [stem for stem in stems if stem not in by_stem]
        if unknown:
            raise DatasetError(f"{len(unknown)} stems are not usable pairs of {self.root} ({_examples(unknown)}); "
                               "check the split lists against dataset.stems and dataset.skipped")
        subset = object.__new__(SaliencyDataset)
        subset.root, subset.layout = self.root, self.layout
        subset.unpaired_images, subset.unpaired_masks = self.unpaired_images, self.unpaired_masks
        subset._state = self._state
        subset.samples = [by_stem[stem] for stem in sorted(stems)]
        return subset

    def load(self, index):
        """The decoded ``Sample`` at ``index``, or None when its files cannot be decoded (then recorded in ``skipped``)."""
        pair = self.samples[index]
        state = self._state
        if pair.stem in state.cache:
            return state.cache[pair.stem]
        if pair.stem in state.unreadable_stems:
            return None
        try:
            image, orientation = _read_image_and_orientation(pair.image)
        except Exception as error:  # PIL raises many types on damaged data
            return self._record_unreadable(pair, pair.image, error)
        try:
            mask = _read_mask(pair.mask)
        except Exception as error:
            return self._record_unreadable(pair, pair.mask, error)
        mask = _mask_in_image_orientation(mask, image.shape[:2], orientation, pair.mask)
        if mask.shape != image.shape[:2]:
            warnings.warn(f"{pair.mask.name}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
                          f"{image.shape[1]}x{image.shape[0]}; resized to the image's (nearest neighbour)",
                          DatasetWarning, stacklevel=2)
            resized = Image.fromarray(mask.astype(np.uint8)).resize((image.shape[1], image.shape[0]), Image.NEAREST)
            mask = np.asarray(resized).astype(bool)
        sample = Sample(pair.stem, image, mask)
        size = image.nbytes + mask.nbytes
        if state.cached_bytes + size <= state.cache_budget:
            state.cache[pair.stem] = sample
            state.cached_bytes += size
        return sample

    def _record_unreadable(self, pair, path, error):
        self._state.unreadable_stems.add(pair.stem)
        self._state.skipped.append(SkippedFile(path, f"cannot be decoded ({type(error).__name__}: {error})"))
        warnings.warn(f"{path}: cannot be decoded ({error}); skipped", DatasetWarning, stacklevel=3)
        return None


# --- Splits -------------------------------------------------------------------------------------


def read_stem_list(path):
    """Stems listed in a text file, one per line; blank lines and '#' comments are ignored, and a
    file extension on a line (``0001.jpg``) is dropped."""
    stems = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = Path(line).name
            suffix = Path(name).suffix.lower()
            stems.append(name[: -len(suffix)] if suffix in _SPLIT_IMAGE_EXTENSIONS + _SPLIT_MASK_EXTENSIONS else name)
    return stems


def _shuffled(stems, seed):
    ordered = sorted(stems)
    order = np.random.default_rng([seed, _SHUFFLE_STREAM]).permutation(len(ordered))
    return [ordered[i] for i in order]


def split_msra10k(stems, seed=0, test_stems=None, validation_count=MSRA10K_VALIDATION_COUNT):
    """The paper's MSRA10K split: {'train', 'val', 'test'} -> sorted stem lists.

    Without ``test_stems``: a seeded shuffle of the sorted stems gives 8 500 training, 500
    validation and the rest (1 000 of MSRA10K) test stems. With ``test_stems`` (e.g.
    ``read_stem_list('msra1k.txt')`` to hold out MSRA1K exactly, as the paper does): those are the
    test set, ``validation_count`` (500) of the others are drawn for validation and the rest are
    for training.
    """
    stems = sorted(set(stems))
    if test_stems is None:
        needed = MSRA10K_TRAIN_COUNT + MSRA10K_VALIDATION_COUNT
        if len(stems) <= needed:
            raise DatasetError(f"the MSRA10K split needs more than {needed} images, got {len(stems)}; "
                               "use split_by_fractions for smaller datasets")
        shuffled = _shuffled(stems, seed)
        train = shuffled[:MSRA10K_TRAIN_COUNT]
        validation = shuffled[MSRA10K_TRAIN_COUNT:needed]
        test = shuffled[needed:]
    else:
        test = sorted(set(test_stems))
        unknown = sorted(set(test) - set(stems))
        if unknown:
            raise DatasetError(f"{len(unknown)} test stems are not in the dataset ({_examples(unknown)})")
        remaining = _shuffled(set(stems) - set(test), seed)
        if validation_count < 0 or len(remaining) <= validation_count:
            raise DatasetError(f"only {len(remaining)} images are left beside the test list, too few for "
                               f"{validation_count} validation images and a training set; "
                               "ask for fewer validation images (--val-count) or list fewer test stems")
        validation = remaining[:validation_count]
        train = remaining[validation_count:]
    return {"train": sorted(train), "val": sorted(validation), "test": sorted(test)}


def split_by_fractions(stems, fractions=None, seed=0):
    """A seeded random split by fractions, {name: sorted stems}; default train 0.85 / val 0.05 / test 0.10.

    Counts are rounded by largest remainder, so they add up to the number of stems exactly; then
    every split of a positive fraction that came out empty takes one stem from the largest split,
    so 3 stems give 1 / 1 / 1 (fewer stems than positive fractions: a DatasetError).
    """
    fractions = dict(fractions or {"train": 0.85, "val": 0.05, "test": 0.10})
    if any(fraction < 0 for fraction in fractions.values()) or not np.isclose(sum(fractions.values()), 1):
        raise DatasetError(f"split fractions must be non-negative and add up to 1, got {fractions}")
    shuffled = _shuffled(set(stems), seed)
    exact = np.array(list(fractions.values())) * len(shuffled)
    counts = np.floor(exact).astype(int)
    shortfall = len(shuffled) - counts.sum()
    counts[np.argsort(counts - exact, kind="stable")[:shortfall]] += 1
    positive = np.array(list(fractions.values())) > 0
    if positive.sum() > len(shuffled):
        raise DatasetError(f"{len(shuffled)} stems cannot be split into {positive.sum()} non-empty parts "
                           f"({', '.join(name for name, f in fractions.items() if f > 0)})")
    for empty in np.flatnonzero(positive & (counts == 0)):
        counts[np.argmax(counts)] -= 1
        counts[empty] += 1
    splits, start = {}, 0
    for name, count in zip(fractions, counts):
        splits[name] = sorted(shuffled[start:start + count])
        start += count
    return splits


def split_by_counts(stems, counts, seed=0):
    """A seeded random split by counts, {name: sorted stems}: ``counts`` maps each split name to
    its number of stems, and exactly one of them to None, which takes the rest (at least one).
    Stems are dealt out of the same seeded shuffle, in the order of ``counts``, as
    ``split_by_fractions`` and ``split_msra10k`` deal them."""
    shuffled = _shuffled(set(stems), seed)
    rest = [name for name, count in counts.items() if count is None]
    if len(rest) != 1 or any(count < 0 for count in counts.values() if count is not None):
        raise DatasetError(f"split counts must be non-negative with exactly one None (the rest), got {counts}")
    fixed = sum(count for count in counts.values() if count is not None)
    if fixed >= len(shuffled):
        asked = ", ".join(f"{count} {name}" for name, count in counts.items() if count is not None)
        raise DatasetError(f"{len(shuffled)} pairs cannot be split into {asked} and at least one {rest[0]} pair; "
                           "ask for fewer (--val-count, --test-count) or add pairs")
    splits, start = {}, 0
    for name, count in counts.items():
        count = len(shuffled) - fixed if count is None else count
        splits[name] = sorted(shuffled[start:start + count])
        start += count
    return splits


def split_from_lists(stems, lists, remainder=None):
    """{name: sorted stems} from list files ({name: path}); stems in no list go to ``remainder``
    (a split name) or, when it is None, are left out."""
    available = set(stems)
    splits, owner = {}, {}
    for name, path in lists.items():
        listed = read_stem_list(path)
        unknown = sorted(set(listed) - available)
        if unknown:
            raise DatasetError(f"list {path} names {len(unknown)} stems not in the dataset ({_examples(unknown)})")
        for stem in listed:
            if owner.setdefault(stem, name) != name:
                raise DatasetError(f"stem {stem!r} is in both the {owner[stem]!r} and {name!r} lists")
        splits[name] = sorted(set(listed))
    if remainder is not None:
        splits[remainder] = sorted(set(splits.get(remainder, [])) | (available - owner.keys()))
    return splits


# --- Augmentation and normalisation -------------------------------------------------------------


def random_crop_box(height, width, rng, scale=CROP_SCALE):
    """(left, top, right, bottom) of a box with each side a uniform ``scale`` fraction of the image's, placed uniformly."""
    crop_height = max(1, round(height * rng.uniform(*scale)))
    crop_width = max(1, round(width * rng.uniform(*scale)))
    top = int(rng.integers(0, height - crop_height + 1))
    left = int(rng.integers(0, width - crop_width + 1))
    return left, top, left + crop_width, top + crop_height


def _resize_pair(image, mask, size, box=None):
    resized_image = Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box)
    resized_mask = Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST, box=box)
    return np.asarray(resized_image), np.asarray(resized_mask).astype(bool)


def augment(image, mask, size, rng, *, crop_scale=CROP_SCALE, flip_probability=FLIP_PROBABILITY):
    """A training view of one pair: random crop, random horizontal flip, resize to (size, size).

    Returns uint8 (size, size, 3) and bool (size, size); the image and mask get the same crop and flip.
    """
    box = random_crop_box(*mask.shape, rng, crop_scale)
    image, mask = _resize_pair(image, mask, size, box)
    if rng.random() < flip_probability:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return image, mask


def resize_for_evaluation(image, size):
    """The whole image resized to (size, size), bilinear, uint8."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_saliency_map(saliency, shape):
    """A (S, S) float map resized (bilinear) to ``shape`` = (height, width), e.g. back to a mask's size."""
    saliency = np.asarray(saliency, dtype=np.float32)
    resized = np.asarray(Image.fromarray(saliency).resize((shape[1], shape[0]), Image.BILINEAR))
    # Interpolation stays within the input's range up to rounding, which could put a map in [0, 1]
    # a hair above 1 and make the metrics reject it.
    return np.clip(resized, saliency.min(), saliency.max())


def normalize(images):
    """uint8 (..., H, W, 3) RGB -> float32 (..., 3, H, W), still 0-255: the network's input."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(images), -1, -3), dtype=np.float32)


def denormalize(images):
    """The inverse of ``normalize`` for display: float (..., 3, H, W) -> uint8 (..., H, W, 3)."""
    channels_last = np.moveaxis(np.asarray(images, dtype=np.float32), -3, -1)
    return np.clip(np.rint(channels_last), 0, 255).astype(np.uint8)


# --- Batches ------------------------------------------------------------------------------------


class TrainingBatches:
    """An endless, seeded, resumable iterator of augmented training batches.

    Each ``next()`` gives ``(images, masks)``: float32 (B, 3, S, S) normalised images and int32
    (B, S, S) masks with 1 = salient. Every epoch visits the dataset in a fresh shuffled order.

    The randomness is a pure function of (seed, epoch, position in the epoch): the epoch's order
    comes from a generator seeded with (seed, epoch) and each item's crop and flip from one seeded
    with (seed, epoch, position). So ``state_dict()`` is just those three numbers, and a run
    restored with ``load_state_dict()`` draws exactly the batches an uninterrupted run would. An
    item whose files cannot be decoded is passed over (the next item of the order takes its place),
    which is equally reproducible.
    """

    def __init__(self, dataset, batch_size, size, seed=0, *, crop_scale=CROP_SCALE,
                 flip_probability=FLIP_PROBABILITY):
        if batch_size < 1 or size < 1:
            raise ValueError(f"batch_size and size must be positive, got {batch_size} and {size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.size = size
        self.seed = seed
        self.crop_scale = crop_scale
        self.flip_probability = flip_probability
        self.epoch = 0
        self.position = 0
        self._order_epoch, self._order = None, None

    def __iter__(self):
        return self

    def __next__(self):
        images = np.empty((self.batch_size, self.size, self.size, 3), dtype=np.uint8)
        masks = np.empty((self.batch_size, self.size, self.size), dtype=np.int32)
        for slot in range(self.batch_size):
            images[slot], masks[slot] = self._next_view()
        return normalize(images), masks

    def _epoch_order(self):
        if self._order_epoch != self.epoch:
            self._order = np.random.default_rng([self.seed, _SHUFFLE_STREAM, self.epoch]).permutation(len(self.dataset))
            self._order_epoch = self.epoch
        return self._order

    def _next_view(self):
        failures_in_a_row = 0
        while True:
            if self.position == len(self.dataset):
                self.epoch, self.position = self.epoch + 1, 0
            index = self._epoch_order()[self.position]
            rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, self.epoch, self.position])
            self.position += 1
            sample = self.dataset.load(index)
            if sample is not None:
                return augment(sample.image, sample.mask, self.size, rng,
                               crop_scale=self.crop_scale, flip_probability=self.flip_probability)
            failures_in_a_row += 1
            # Any 2N consecutive draws contain a whole epoch, so then every item has failed.
            if failures_in_a_row >= 2 * len(self.dataset):
                raise DatasetError(f"none of the {len(self.dataset)} training pairs can be decoded; "
                                   f"{self.dataset.summary()}")

    def state_dict(self):
        """Everything needed to resume: plain ints, safe to store as JSON or in an .npz."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "dataset_size": len(self.dataset)}

    def load_state_dict(self, state):
        if state["dataset_size"] != len(self.dataset):
            raise DatasetError(f"the saved sampler state is for a dataset of {state['dataset_size']} pairs but this one "
                               f"has {len(self.dataset)}; resume with the same dataset and split")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])


@dataclass(frozen=True)
class EvaluationBatch:
    images: np.ndarray  # float32 (B, 3, S, S), normalised
    masks: list  # bool (H, W) arrays at each image's original size
    stems: list


def evaluation_batches(dataset, size, batch_size=16, distortion=None):
    """Batches of whole images resized to (size, size) with their full-size masks, in stem order.

    Undecodable pairs are left out (and recorded in ``dataset.skipped``). ``distortion``, if
    given, is called as distortion(image, stem) on each image at its own size before the resize
    (``minimenet.distort``); masks are never touched.
    """
    images, masks, stems = [], [], []
    for index in range(len(dataset)):
        sample = dataset.load(index)
        if sample is None:
            continue
        image = distortion(sample.image, sample.stem) if distortion else sample.image
        images.append(resize_for_evaluation(image, size))
        masks.append(sample.mask)
        stems.append(sample.stem)
        if len(images) == batch_size:
            yield EvaluationBatch(normalize(np.stack(images)), masks, stems)
            images, masks, stems = [], [], []
    if images:
        yield EvaluationBatch(normalize(np.stack(images)), masks, stems)


# --- The synthetic default dataset --------------------------------------------------------------
# The scenes are drawn by minimenet.synthetic (salient objects on natural-image-like backgrounds);
# this section writes them in the MSRA10K layout and caches the set. minimenet.synthetic_transfer
# is a second, independent generator that training never sees, for measuring transfer.

from .synthetic import synthesize_sample  # noqa: E402  (re-exported: the scenes make_synthetic_dataset writes)

# 1: one large central object among small distractors; 2: minimenet.synthetic's scenes. A set
# written by another version is regenerated (its marker differs), and the default folder's name
# carries the version, so an older cache is never reused.
SYNTHETIC_VERSION = 2
_SYNTHETIC_MARKER = "minimenet-synthetic.json"


def default_synthetic_root(seed=0):
    """Where the synthetic set of ``seed`` lives: ``$MINIMENET_DATA`` if set, else
    ``~/.cache/minimenet/synthetic-v{SYNTHETIC_VERSION}``, with "-seed{seed}" appended for a
    seed other than 0, so that runs with different seeds never rewrite each other's images."""
    override = os.environ.get("MINIMENET_DATA")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = Path(override).expanduser() if override else cache_home / "minimenet" / f"synthetic-v{SYNTHETIC_VERSION}"
    return root if seed == 0 else root.with_name(f"{root.name}-seed{seed}")


def _synthetic_marker(count, seed, min_side, max_side):
    return {"generator": "minimenet.data.make_synthetic_dataset", "version": SYNTHETIC_VERSION,
            "count": count, "seed": seed, "min_side": min_side, "max_side": max_side}


def _read_marker(root):
    try:
        return json.loads((root / _SYNTHETIC_MARKER).read_text())
    except (OSError, ValueError):
        return None


def _holds_only_synthetic_files(root):
    """True when every entry of ``root`` is a file the generator writes (an incomplete or older set)."""
    return all(entry.is_file() and (entry.name == _SYNTHETIC_MARKER or re.fullmatch(r"\d{5,}\.(jpg|png)", entry.name))
               for entry in root.iterdir())


def make_synthetic_dataset(root=None, count=1000, seed=0, *, min_side=80, max_side=128):
    """Write (or reuse) the synthetic salient-object set in the MSRA10K layout and return its folder.

    The scenes are ``minimenet.synthetic.synthesize_sample(seed, index)``: 1-5 salient objects of
    varied size, shape and position on natural-image-like backgrounds with non-salient clutter.
    ``root`` defaults to ``default_synthetic_root(seed)``. Files are ``00000.jpg`` (JPEG quality 95) and
    ``00000.png`` (mask, 0/255), each image between ``min_side`` and ``max_side`` pixels per side.
    The same seed gives byte-identical files. The set is generated in a temporary sibling folder
    that is renamed into place only when complete, with a marker file recording count, seed and
    version; a folder with a matching marker is reused, and one holding only generator files
    without a matching marker (other parameters, or a set whose writing was interrupted) is
    regenerated. Any other existing folder is refused rather than overwritten.
    """
    root = Path(root) if root is not None else default_synthetic_root(seed)
    marker = _synthetic_marker(count, seed, min_side, max_side)
    if _read_marker(root) == marker:
        return root
    if root.exists() and not (root.is_dir() and _holds_only_synthetic_files(root)):
        raise DatasetError(f"{root} exists and holds files other than a synthetic set; "
                           "choose another folder (or set MINIMENET_DATA) rather than overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        for index in range(count):
            image, mask = synthesize_sample(seed, index, min_side, max_side)
            Image.fromarray(image).save(staging / f"{index:05d}.jpg", quality=95)
            Image.fromarray(mask.astype(np.uint8) * 255).save(staging / f"{index:05d}.png")
        (staging / _SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=1))
        if root.exists():
            shutil.rmtree(root)  # only generator files, checked above
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root
