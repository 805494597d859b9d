"""Shared fixtures: the array backends a test runs on, and a seeded random generator.

``xp`` parametrises a test over the array modules that are actually usable here: NumPy always,
CuPy only when minimenet selected the GPU (``minimenet.backend.device == "gpu"``, e.g. under
``MINIMENET_DEVICE=gpu``). On a CPU-only machine the CuPy case is not generated at all rather
than skipped, so a green run never counts a check that did not run.

The training tests (test_train, test_config, test_runs, test_checkpoint, test_examples) share the
``synthetic`` data set fixture and the helpers below, which they import (``from conftest import run``);
the data tests (test_data_*) share the helpers that write images, masks and data set folders.
"""
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import backend, manual_seed, nn
from minimenet import train as training
from minimenet.checkpoint import load_checkpoint
from minimenet.config import TrainConfig
from minimenet.data import DatasetWarning, SaliencyDataset, make_synthetic_dataset
from minimenet.model import MEnet


def available_backends():
    modules = [np]
    if backend.device == "gpu":
        import cupy
        modules.append(cupy)
    return modules


BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS, ids=[m.__name__ for m in BACKENDS])
def xp(request):
    """The array module (numpy or cupy) a backend-parametrised test builds its inputs with."""
    return request.param


@pytest.fixture
def rng():
    """A fresh, fixed-seed NumPy generator per test, so every test is reproducible on its own."""
    return np.random.default_rng(1234)


# --- Training runs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 30-pair synthetic data set, made once per test module."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", count=30, seed=1, min_side=40, max_side=56)


def config(data, out, **changes):
    """A TrainConfig for a tiny run (S 32, width 2, 4 iterations) on ``data`` into ``out``."""
    options = dict(data=str(data), out=str(out), image_size=32, width=2, iterations=4, batch_size=4,
                   lr=0.01, warmup=2, val_every=100, checkpoint_every=100, log_every=1)
    options.update(changes)
    return TrainConfig(**options)


def run(cfg, resume=False):
    return training.train(cfg, resume=resume, stream=io.StringIO())


def final_parameters(out):
    return load_checkpoint(Path(out) / "checkpoint.npz")


def log_rows(out):
    return [json.loads(line) for line in open(Path(out) / "log.jsonl")]


def loss_turns_nan_at(monkeypatch, iteration):
    """From now on MEnet.loss returns NaN at its ``iteration``-th call (the real loss otherwise)."""
    real_loss = MEnet.loss
    calls = []

    def loss_that_turns_nan(self, out, masks):
        total, parts = real_loss(self, out, masks)
        calls.append(1)
        return (total * float("nan") if len(calls) == iteration else total), parts
    monkeypatch.setattr(MEnet, "loss", loss_that_turns_nan)
    return real_loss


# --- Image and mask files, data set folders --------------------------------------------------------

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


# --- A small layer stack (test_nn, test_optim) -------------------------------------------------------

def small_net(seed=0):
    manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1, bias=False))
