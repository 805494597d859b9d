"""minimenet/config.py: TrainConfig's presets and defaults, settings refused up front, and what a
resumed run keeps from, or refuses to change in, the saved configuration."""
import shutil
from pathlib import Path

import pytest

from minimenet.config import TrainConfig

from conftest import config, run


def test_resume_keeps_the_saved_configuration(synthetic, tmp_path):
    run(config(synthetic, tmp_path / "run", iterations=2, lr=0.02))
    resumed = run(TrainConfig(out=str(tmp_path / "run")), resume=True)
    # The run's own length, not the preset's 2000 iterations.
    assert (resumed.data, resumed.lr, resumed.image_size, resumed.iterations) == (str(synthetic), 0.02, 32, 2)
    # The full original command line with --resume added is accepted.
    assert run(config(synthetic, tmp_path / "run", iterations=2, lr=0.02), resume=True).iterations == 2


def test_preset_defaults_follow_the_authors_solver():
    paper = TrainConfig(preset="paper")
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch_size, paper.iterations) == (0.1, 0.9, 1e-8, 5, 100_000)
    assert (paper.warmup, paper.clip_norm) == (0, 0)
    assert paper.model_config().image_size == 224 and paper.model_config().width == 32


@pytest.mark.parametrize("setting, value, flag", [
    ("lr", -1.0, "--lr"), ("lr", 0.0, "--lr"), ("warmup", -5, "--warmup"), ("clip_norm", -1.0, "--clip-norm"),
    ("width", 0, "--width"), ("val_every", 0, "--val-every"), ("checkpoint_every", 0, "--checkpoint-every"),
    ("iterations", 0, "--iterations"), ("batch_size", 0, "--batch-size"), ("momentum", 1.5, "--momentum"),
    ("image_size", 48, "--image-size"), ("lr", float("nan"), "--lr"), ("val_count", -1, "--val-count"),
])
def test_settings_that_cannot_work_are_refused_up_front(tmp_path, setting, value, flag):
    with pytest.raises(ValueError, match=flag):
        TrainConfig(out=str(tmp_path / "run"), **{setting: value})


@pytest.mark.parametrize("changes, message", [
    (dict(lr=5.0), r"--lr 5.0 \(the run's: 0.01\)"),
    (dict(preset="paper"), "--preset paper"),
    (dict(iterations=1), "learning-rate schedule"),
    (dict(iterations=3), "learning-rate schedule"),
])
def test_resume_refuses_flags_that_differ_from_the_run(synthetic, tmp_path, changes, message):
    cfg = config(synthetic, tmp_path / "run", iterations=2)
    run(cfg)
    before = (Path(cfg.out) / "checkpoint.npz").read_bytes()
    with pytest.raises(ValueError, match=message):
        run(TrainConfig(out=cfg.out, **changes), resume=True)
    assert (Path(cfg.out) / "checkpoint.npz").read_bytes() == before


def test_resume_refuses_another_dataset_but_follows_a_moved_one(synthetic, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    cfg = config(data, tmp_path / "run", iterations=2)
    run(cfg)
    with pytest.raises(ValueError, match="--data"):
        run(TrainConfig(out=cfg.out, data=str(synthetic)), resume=True)
    data.rename(tmp_path / "moved")
    assert run(TrainConfig(out=cfg.out, data=str(tmp_path / "moved")), resume=True).data == str(tmp_path / "moved")
