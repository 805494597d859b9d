"""The synthetic scene generators: minimenet.synthetic (the training scenes) and
minimenet.synthetic_transfer (the second generator, never trained on)."""
import time

import numpy as np
import pytest

from minimenet import data, synthetic
from minimenet.data import SaliencyDataset
from minimenet.synthetic_transfer import make_transfer_dataset, synthesize_transfer_sample


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
