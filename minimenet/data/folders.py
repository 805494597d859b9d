"""Salient-object dataset folders: which layout a folder has, which files pair up, and loading
a pair with the checks that keep a bad file from ending a run.

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
"""
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DatasetError, DatasetWarning, examples_of
from .reading import _mask_in_image_orientation, _read_image_and_orientation, read_mask

# Decoded images are cached as uint8 up to this many bytes: all of MSRA10K decoded is about
# 4 GB, the default synthetic set about 40 MB.
DEFAULT_CACHE_BYTES = 2 * 1024 ** 3

_MSRA10K_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".bmp")
_MSRA10K_MASK_EXTENSIONS = (".png",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".bmp", ".jpg", ".tif", ".tiff")
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
            f"and {len(folders)} folders ({examples_of(folders) or 'none'})")


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
            images = _files_by_stem(image_folder, IMAGE_EXTENSIONS)
            masks = _files_by_stem(mask_folder, MASK_EXTENSIONS)
            if images.keys() & masks.keys() or layout == "split":
                return _checked_pairs(root, layout, images, masks)
    folders = sorted(entry for entry in root.iterdir() if entry.is_dir())
    image_folders = sorted((folder for folder in folders if folder.name.lower() in _IMAGE_FOLDER_NAMES),
                           key=lambda folder: _IMAGE_FOLDER_NAMES.index(folder.name.lower()))
    mask_folders = sorted((folder for folder in folders if folder.name.lower() in _MASK_FOLDER_NAMES),
                          key=lambda folder: _MASK_FOLDER_NAMES.index(folder.name.lower()))
    for image_folder in image_folders:
        for mask_folder in mask_folders:
            images = _files_by_stem(image_folder, IMAGE_EXTENSIONS)
            masks = _files_by_stem(mask_folder, MASK_EXTENSIONS)
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
                warnings.warn(f"{self.root}: {len(stems)} {kind} no {missing} and are left out ({examples_of(stems)})",
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
                f"({examples_of(f'{entry.path.name} ({entry.reason})' for entry in skipped)})")

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
            raise DatasetError(f"{len(unknown)} stems are not usable pairs of {self.root} ({examples_of(unknown)}); "
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
            mask = read_mask(pair.mask)
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
