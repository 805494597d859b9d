"""Splitting a dataset's stems into training, validation and test sets, by the paper's MSRA10K
rule, by fractions, by counts or by lists; every split is a seeded shuffle, so it is the same
for the same seed."""
from pathlib import Path

import numpy as np

from .errors import DatasetError, examples_of
from .folders import IMAGE_EXTENSIONS, MASK_EXTENSIONS

MSRA10K_TRAIN_COUNT = 8500
MSRA10K_VALIDATION_COUNT = 500
MSRA10K_SIZE = 9000  # a dataset of more pairs than this is taken for MSRA10K and split as the paper
# Independent random streams derived from one seed, told apart by their second seed word.
SHUFFLE_STREAM, AUGMENT_STREAM = 0, 1


def read_stem_list(path):
    """Stems listed in a text file, one per line; blank lines and '#' comments are ignored, and a
    file extension on a line (``0001.jpg``) is dropped."""
    stems = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = Path(line).name
            suffix = Path(name).suffix.lower()
            stems.append(name[: -len(suffix)] if suffix in IMAGE_EXTENSIONS + MASK_EXTENSIONS else name)
    return stems


def _shuffled(stems, seed):
    ordered = sorted(stems)
    order = np.random.default_rng([seed, SHUFFLE_STREAM]).permutation(len(ordered))
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
            raise DatasetError(f"{len(unknown)} test stems are not in the dataset ({examples_of(unknown)})")
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
            raise DatasetError(f"list {path} names {len(unknown)} stems not in the dataset ({examples_of(unknown)})")
        for stem in listed:
            if owner.setdefault(stem, name) != name:
                raise DatasetError(f"stem {stem!r} is in both the {owner[stem]!r} and {name!r} lists")
        splits[name] = sorted(set(listed))
    if remainder is not None:
        splits[remainder] = sorted(set(splits.get(remainder, [])) | (available - owner.keys()))
    return splits


def training_splits(stems, seed, val_count=None, test_count=None, test_list=None):
    """{"train", "val", "test"} -> stems, the trainer's policy. Over ``MSRA10K_SIZE`` pairs
    (MSRA10K): the paper's split, 8 500 / 500 / the rest, by a seeded shuffle; with
    ``test_list`` (a file of stems, e.g. MSRA1K), the stems it names are the test set and
    ``val_count`` (default 500, 5 % on a small set) of the rest the validation set; otherwise
    85 / 5 / 10 %, at least one pair each. ``val_count`` and ``test_count`` set those sizes (0: no
    validation or no test), the rest trains. A split that cannot be made is a DatasetError that
    names the flag that changes it."""
    n = len(stems)
    if test_list:
        val = val_count if val_count is not None else min(MSRA10K_VALIDATION_COUNT, max(1, round(0.05 * n)))
        return split_msra10k(stems, seed=seed, test_stems=read_stem_list(test_list), validation_count=val)
    if val_count is None and test_count is None:
        if n > MSRA10K_SIZE:
            return split_msra10k(stems, seed=seed)
        if n < 3:
            raise DatasetError(f"{n} pairs are too few for a training, a validation and a test pair; add pairs, "
                               "or set --val-count 0 (no validation) and/or --test-count 0 (no test report)")
        return split_by_fractions(stems, seed=seed)
    large = n > MSRA10K_SIZE
    val = val_count if val_count is not None else (MSRA10K_VALIDATION_COUNT if large else max(1, round(0.05 * n)))
    test = test_count if test_count is not None else (n - MSRA10K_SIZE if large else max(1, round(0.10 * n)))
    return split_by_counts(stems, {"train": None, "val": val, "test": test}, seed=seed)
