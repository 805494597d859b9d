"""Salient-object datasets, one idea per module:

- ``folders``: which layout a folder has (MSRA10K, DUTS, ECSSD, HKU-IS, DUT-OMRON, PASCAL-S, SOD,
  images/ + masks/), which files pair up, and ``SaliencyDataset``, which loads a pair;
- ``reading``: one image or mask file into arrays, and the one rule that binarises every mask
  (``minimenet.metrics`` reads masks with it too);
- ``splits``: training, validation and test stems, and the trainer's policy for choosing them;
- ``batches``: augmentation, the network's input and batches for training and evaluation;
- ``synthetic_set``: the built-in synthetic set, written once and cached;
- ``errors``: DatasetError and DatasetWarning.

Everything a user needs is importable from ``minimenet.data`` directly.
"""
from .batches import (CROP_SCALE, FLIP_PROBABILITY, EvaluationBatch, TrainingBatches, augment, denormalize,
                      evaluation_batches, normalize, random_crop_box, resize_for_evaluation, resize_saliency_map)
from .errors import DatasetError, DatasetWarning, examples_of
from .folders import DEFAULT_CACHE_BYTES, Sample, SamplePaths, SaliencyDataset, SkippedFile
from .reading import MASK_THRESHOLD, binarize_mask, read_image, read_mask
from .splits import (MSRA10K_SIZE, MSRA10K_TRAIN_COUNT, MSRA10K_VALIDATION_COUNT, read_stem_list, split_by_counts,
                     split_by_fractions, split_from_lists, split_msra10k, training_splits)
from .synthetic_set import SYNTHETIC_VERSION, default_synthetic_root, make_synthetic_dataset, synthesize_sample
