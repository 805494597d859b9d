"""What the network is fed: training views (augmentation) and evaluation images, normalised and
stacked into batches.

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
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import DatasetError
from .splits import AUGMENT_STREAM, SHUFFLE_STREAM

CROP_SCALE = (0.9, 1.0)
FLIP_PROBABILITY = 0.5


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
            self._order = np.random.default_rng([self.seed, SHUFFLE_STREAM, self.epoch]).permutation(len(self.dataset))
            self._order_epoch = self.epoch
        return self._order

    def _next_view(self):
        failures_in_a_row = 0
        while True:
            if self.position == len(self.dataset):
                self.epoch, self.position = self.epoch + 1, 0
            index = self._epoch_order()[self.position]
            rng = np.random.default_rng([self.seed, AUGMENT_STREAM, self.epoch, self.position])
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
