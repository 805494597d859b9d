"""The trainer: resume equality, NaN stops, interruption, atomic and damaged checkpoints, and the
example scripts on folders of both layouts."""
import io
import json
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import backend
from minimenet import train as training
from minimenet.data import make_synthetic_dataset
from minimenet.model import MEnet
from minimenet.train import CheckpointError, TrainConfig, TrainingDiverged, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", count=30, seed=1, min_side=40, max_side=56)


def config(data, out, **changes):
    options = dict(data=str(data), out=str(out), image_size=32, width=2, iterations=4, batch_size=2,
                   lr=0.01, warmup=2, val_every=100, checkpoint_every=100, log_every=1)
    options.update(changes)
    return TrainConfig(**options)


def run(cfg, resume=False):
    return training.train(cfg, resume=resume, stream=io.StringIO())


def final_parameters(out):
    return load_checkpoint(Path(out) / "checkpoint.npz")


def assert_same_training(actual, expected, name):
    """Bit for bit on the CPU. On the GPU the weight-gradient and metric-loss kernels sum with
    atomicAdd, whose order varies from run to run, so two identical runs agree only to rounding."""
    if backend.device == "gpu":
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-5, err_msg=name)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_a_resumed_run_matches_an_uninterrupted_one(synthetic, tmp_path, monkeypatch):
    # Stopped by SIGTERM during iteration 3 of 6 (the lr schedule depends on the run's length,
    # so the first part must be a run of 6 too), then resumed.
    real_loss = MEnet.loss
    calls = []

    def loss_then_sigterm(self, out, masks):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(self, out, masks)
    run(config(synthetic, tmp_path / "straight", iterations=6))
    monkeypatch.setattr(MEnet, "loss", loss_then_sigterm)
    with pytest.raises(KeyboardInterrupt):
        run(config(synthetic, tmp_path / "resumed", iterations=6))
    monkeypatch.setattr(MEnet, "loss", real_loss)
    assert final_parameters(tmp_path / "resumed")["meta"]["iteration"] == 3
    run(config(synthetic, tmp_path / "resumed", iterations=6), resume=True)
    straight, resumed = final_parameters(tmp_path / "straight"), final_parameters(tmp_path / "resumed")
    assert straight["meta"]["iteration"] == resumed["meta"]["iteration"] == 6
    assert straight["meta"]["sampler"] == resumed["meta"]["sampler"]
    for group in ("model", "optimizer"):
        assert straight[group].keys() == resumed[group].keys()
        for name in straight[group]:
            assert_same_training(resumed[group][name], straight[group][name], name)


def test_the_log_and_loss_curve_are_written(synthetic, tmp_path):
    out = Path(run(config(synthetic, tmp_path / "run", iterations=4, val_every=2)).out)
    records = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert {"metric", "ce", "lr", "grad_norm"} <= set(records[0])
    assert any("val_metric_max_f" in r for r in records)
    with Image.open(out / "loss.png") as picture:
        assert picture.size == (640, 520)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synthetic, tmp_path, monkeypatch):
    real_loss = MEnet.loss
    calls = []

    def loss_that_turns_nan(self, out, masks):
        total, parts = real_loss(self, out, masks)
        calls.append(1)
        if len(calls) == 3:
            total = total * float("nan")
        return total, parts
    monkeypatch.setattr(MEnet, "loss", loss_that_turns_nan)
    cfg = config(synthetic, tmp_path / "run", iterations=5, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at iteration 3.*last good checkpoint is kept"):
        run(cfg)
    assert final_parameters(cfg.out)["meta"]["iteration"] == 2


def test_an_interrupt_saves_at_the_end_of_the_iteration_and_resume_finishes(synthetic, tmp_path, monkeypatch):
    real_loss = MEnet.loss
    calls = []

    def loss_then_ctrl_c(self, out, masks):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-iteration
        return real_loss(self, out, masks)
    monkeypatch.setattr(MEnet, "loss", loss_then_ctrl_c)
    cfg = config(synthetic, tmp_path / "run", iterations=5)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert final_parameters(cfg.out)["meta"]["iteration"] == 2
    monkeypatch.setattr(MEnet, "loss", real_loss)
    run(cfg, resume=True)
    run(config(synthetic, tmp_path / "straight", iterations=5))
    name = "ce_head.layers.0.weight"
    assert_same_training(final_parameters(cfg.out)["model"][name], final_parameters(tmp_path / "straight")["model"][name], name)


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(synthetic, tmp_path, monkeypatch):
    cfg = config(synthetic, tmp_path / "run", iterations=2)
    run(cfg)
    path = Path(cfg.out) / "checkpoint.npz"
    before = path.read_bytes()

    def disk_full_halfway(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")
    monkeypatch.setattr(training.np, "savez", disk_full_halfway)
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


def test_resume_keeps_the_saved_configuration(synthetic, tmp_path):
    run(config(synthetic, tmp_path / "run", iterations=2, lr=0.02))
    resumed = run(TrainConfig(out=str(tmp_path / "run"), iterations=3), resume=True)
    assert (resumed.data, resumed.lr, resumed.image_size, resumed.iterations) == (str(synthetic), 0.02, 32, 3)


def test_learning_rate_warms_up_linearly_then_stays():
    cfg = TrainConfig(lr=0.1, warmup=4)
    assert [training.learning_rate(cfg, i) for i in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_preset_defaults_follow_the_authors_solver():
    paper = TrainConfig(preset="paper")
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch_size, paper.iterations) == (0.1, 0.9, 1e-8, 5, 100_000)
    assert (paper.warmup, paper.clip_norm) == (0, 0)
    assert paper.model_config().image_size == 224 and paper.model_config().width == 32


def test_learning_rate_is_divided_by_ten_at_sixty_and_ninety_percent():
    paper = TrainConfig(preset="paper")
    lrs = {i: training.learning_rate(paper, i) for i in (0, 59_999, 60_000, 89_999, 90_000, 99_999)}
    assert lrs == pytest.approx({0: 0.1, 59_999: 0.1, 60_000: 0.01, 89_999: 0.01, 90_000: 0.001, 99_999: 0.001})
    tiny = TrainConfig(preset="tiny", iterations=2000, warmup=10)
    assert training.learning_rate(tiny, 0) == pytest.approx(0.01) and training.learning_rate(tiny, 9) == pytest.approx(0.1)
    assert training.learning_rate(tiny, 1199) == pytest.approx(0.1) and training.learning_rate(tiny, 1200) == pytest.approx(0.01)


# --- The example scripts ---------------------------------------------------------------------------

def split_layout_copy(source, destination):
    (destination / "images").mkdir(parents=True)
    (destination / "masks").mkdir()
    for image in sorted(source.glob("*.jpg"))[:6]:
        shutil.copy(image, destination / "images" / image.name)
        shutil.copy(image.with_suffix(".png"), destination / "masks" / (image.stem + ".png"))
    return destination


def script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_train_evaluate_and_predict_scripts_on_both_layouts(synthetic, tmp_path):
    out = tmp_path / "run"
    trained = script("train_msra10k.py", "--data", synthetic, "--out", out, "--image-size", 32, "--width", 2,
                     "--iterations", 2, "--batch-size", 2)
    assert trained.returncode == 0, trained.stderr
    assert "metric map: max F" in trained.stdout and (out / "predictions.png").exists()

    split = split_layout_copy(synthetic, tmp_path / "split")
    evaluated = script("evaluate.py", out / "checkpoint.npz", synthetic, split, "--out", tmp_path / "eval", "--save-maps")
    assert evaluated.returncode == 0, evaluated.stderr
    table = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(table) == {"synthetic", "split"} and table["split"]["images"] == 6
    assert 0 <= table["split"]["metric"]["max_f"] <= 1 and (tmp_path / "eval" / "split_pr.png").exists()

    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    image = next(synthetic.glob("*.jpg"))
    predicted = script("predict.py", out / "checkpoint.npz", image, corrupt, "--out", tmp_path / "maps")
    assert predicted.returncode == 1 and "skipped" in predicted.stderr and "1 of 2 images" in predicted.stderr
    with Image.open(image) as original, Image.open(tmp_path / "maps" / f"{image.stem}_metric.png") as saliency:
        assert saliency.size == original.size


def test_scripts_report_a_wrongly_laid_out_folder_and_a_bad_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    trained = script("train_msra10k.py", "--data", tmp_path / "empty", "--out", tmp_path / "run")
    assert trained.returncode != 0 and "layout" in trained.stderr and "Traceback" not in trained.stderr
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    evaluated = script("evaluate.py", bad, tmp_path / "empty")
    assert evaluated.returncode != 0 and "not a readable minimenet checkpoint" in evaluated.stderr
