"""examples/compare_maps.py: the paired bootstrap that says whether one map source is clearly
better than another."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import train as training
from minimenet.config import TrainConfig
from minimenet.data import SaliencyDataset, make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", count=12, seed=4, min_side=40, max_side=56)


@pytest.fixture(scope="module")
def perfect_maps(data, tmp_path_factory):
    """The masks themselves, as a folder of maps (all but the last image)."""
    folder = tmp_path_factory.mktemp("perfect")
    dataset = SaliencyDataset(data)
    for index, stem in enumerate(dataset.stems[:-1]):
        Image.fromarray(dataset.load(index).mask.astype(np.uint8) * 255).save(folder / f"{stem}.png")
    return folder


def compare(*args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / "compare_maps.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def rows(stdout):
    """{score: (A, B, A - B, verdict)} from the printed table."""
    table = {}
    for line in stdout.splitlines():
        if line.startswith(("max F", "MAE")):
            score, rest = line[:6].strip(), line[6:].split()
            table[score] = (float(rest[0]), float(rest[1]), float(rest[2]), " ".join(rest[5:]))
    return table


def test_perfect_maps_are_clearly_ahead_of_the_centre_prior_on_the_images_both_have(data, perfect_maps):
    run = compare(data, perfect_maps, "centre-prior", "--resamples", 500)
    assert run.returncode == 0, run.stderr
    assert "11 images with a map from both" in run.stdout  # the folder lacks one image's map
    table = rows(run.stdout)
    assert table["max F"][0] == 1.0 and table["max F"][1] < 1.0 and table["max F"][3] == "A is ahead"
    assert table["MAE"][0] == 0.0 and table["MAE"][3] == "A is ahead"
    swapped = rows(compare(data, "centre-prior", perfect_maps, "--resamples", 500).stdout)
    assert swapped["max F"][3] == swapped["MAE"][3] == "B is ahead"


def test_a_source_against_itself_shows_no_difference(data, perfect_maps):
    table = rows(compare(data, perfect_maps, perfect_maps, "--resamples", 200).stdout)
    assert table["max F"][2] == table["MAE"][2] == 0.0
    assert table["max F"][3] == table["MAE"][3] == "no clear difference"


def test_a_checkpoint_is_a_source_and_a_wrong_map_name_is_named(data, tmp_path):
    out = tmp_path / "run"
    training.train(TrainConfig(data=str(data), out=str(out), image_size=32, width=2, iterations=1, batch_size=4,
                               val_every=100, checkpoint_every=100), stream=io.StringIO())
    run = compare(data, f"{out / 'checkpoint.npz'}:ce", "centre-prior", "--resamples", 200)
    assert run.returncode == 0, run.stderr
    assert "12 images with a map from both" in run.stdout and set(rows(run.stdout)) == {"max F", "MAE"}
    wrong = compare(data, f"{out / 'checkpoint.npz'}:saliency", "centre-prior")
    assert wrong.returncode == 1 and "not 'saliency'; write" in wrong.stderr and "Traceback" not in wrong.stderr


def test_too_few_resamples_are_refused(data):
    run = compare(data, "centre-prior", "centre-prior", "--resamples", 10)
    assert run.returncode == 1 and "--resamples must be at least 100" in run.stderr
