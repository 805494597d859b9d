"""minimenet/checkpoint.py: atomic writes, damaged, foreign and mismatched checkpoints, non-finite
values, and file permissions."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from minimenet import checkpoint
from minimenet import train as training
from minimenet.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from minimenet.model import MEnet

from conftest import config, run


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(synthetic, tmp_path, monkeypatch):
    cfg = config(synthetic, tmp_path / "run", iterations=2)
    run(cfg)
    path = Path(cfg.out) / "checkpoint.npz"
    before = path.read_bytes()

    def disk_full_halfway(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")
    monkeypatch.setattr(checkpoint.np, "savez", disk_full_halfway)
    model = MEnet(cfg.model_config())
    batches = training.TrainingBatches(training.datasets(cfg)[0], 2, 32)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model, training.SGD(model.parameters(), 0.1), batches, 9, cfg)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".tmp") == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_a_damaged_checkpoint_is_a_clear_error(synthetic, tmp_path, damage):
    cfg = config(synthetic, tmp_path / "run", iterations=1)
    run(cfg)
    path = Path(cfg.out) / "checkpoint.npz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        path.unlink()
    expected = "no checkpoint at" if damage == "missing" else "not a readable minimenet checkpoint"
    with pytest.raises(CheckpointError, match=expected):
        run(config(synthetic, cfg.out, iterations=2), resume=True)


def test_a_checkpoint_with_non_finite_values_is_never_written(synthetic, tmp_path):
    cfg = config(synthetic, tmp_path / "run", iterations=1)
    run(cfg)
    path = Path(cfg.out) / "checkpoint.npz"
    before = path.read_bytes()
    model = MEnet(cfg.model_config())
    model.parameters()[0].data[...] = np.nan
    batches = training.TrainingBatches(training.datasets(cfg)[0], 2, 32)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(path, model, training.SGD(model.parameters(), 0.1), batches, 9, cfg)
    assert path.read_bytes() == before


def rewrite_checkpoint(path, change):
    """Rewrite a checkpoint's arrays (dict name -> array, "meta" decoded to a dict) through ``change``."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["meta"] = json.loads(arrays["meta"].tobytes().decode())
    change(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(arrays["meta"]).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    cfg = config(synthetic, tmp_path_factory.mktemp("trained") / "run", iterations=1)
    run(cfg)
    return Path(cfg.out) / "checkpoint.npz"


def damaged_copy(trained, tmp_path, change):
    path = tmp_path / "checkpoint.npz"
    shutil.copy(trained, path)
    rewrite_checkpoint(path, change)
    return path


def test_a_checkpoint_of_nan_weights_is_refused(trained, tmp_path):
    def nan_weight(arrays):
        arrays["model/ce_head.layers.0.weight"] = arrays["model/ce_head.layers.0.weight"] * np.nan
    path = damaged_copy(trained, tmp_path, nan_weight)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in 1 arrays \(model/ce_head.layers.0.weight\)"):
        load_model(path)


def wrong_shape(arrays):
    arrays["model/ce_head.layers.0.weight"] = arrays["model/ce_head.layers.0.weight"][:1]


def missing_array(arrays):
    del arrays["model/ce_head.layers.0.weight"]


def unknown_setting(arrays):
    arrays["meta"]["model_config"]["colour"] = "blue"


def foreign(arrays):
    arrays.clear()
    arrays.update(weights=np.zeros(3), meta={})


@pytest.mark.parametrize("change, message", [
    (wrong_shape, "arrays do not match its model configuration"),
    (missing_array, "arrays do not match its model configuration"),
    (unknown_setting, "model configuration cannot be built"),
])
def test_a_checkpoint_that_does_not_match_its_configuration_is_a_clear_error(trained, tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load_model(damaged_copy(trained, tmp_path, change))


def test_a_foreign_npz_is_not_called_damaged(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a minimenet checkpoint: it has no 'meta' record") as caught:
        load_checkpoint(path)
    assert "damaged" not in str(caught.value)


def test_checkpoints_follow_the_umask(trained):
    umask = os.umask(0)
    os.umask(umask)
    assert trained.stat().st_mode & 0o777 == 0o666 & ~umask
