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

from minimenet import checkpoint
from minimenet import train as training
from minimenet.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from minimenet.data import make_synthetic_dataset
from minimenet.model import MEnet
from minimenet.config import TrainConfig
from minimenet.data import training_splits
from minimenet.train import TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", count=30, seed=1, min_side=40, max_side=56)


def config(data, out, **changes):
    options = dict(data=str(data), out=str(out), image_size=32, width=2, iterations=4, batch_size=4,
                   lr=0.01, warmup=2, val_every=100, checkpoint_every=100, log_every=1)
    options.update(changes)
    return TrainConfig(**options)


def run(cfg, resume=False):
    return training.train(cfg, resume=resume, stream=io.StringIO())


def final_parameters(out):
    return load_checkpoint(Path(out) / "checkpoint.npz")


def interrupted_run(cfg, monkeypatch, iteration, signum):
    """Run ``cfg`` with ``signum`` sent to this process during ``iteration`` (mid-iteration)."""
    real_loss = MEnet.loss
    calls = []

    def loss_then_signal(self, out, masks):
        calls.append(1)
        if len(calls) == iteration:
            os.kill(os.getpid(), signum)
        return real_loss(self, out, masks)
    monkeypatch.setattr(MEnet, "loss", loss_then_signal)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(MEnet, "loss", real_loss)


def test_a_resumed_run_matches_an_uninterrupted_one(synthetic, tmp_path, monkeypatch):
    # Stopped by SIGTERM during iteration 3 of 6 (the lr schedule depends on the run's length,
    # so the first part must be a run of 6 too), then resumed.
    run(config(synthetic, tmp_path / "straight", iterations=6))
    interrupted_run(config(synthetic, tmp_path / "resumed", iterations=6), monkeypatch, 3, signal.SIGTERM)
    assert final_parameters(tmp_path / "resumed")["meta"]["iteration"] == 3
    run(config(synthetic, tmp_path / "resumed", iterations=6), resume=True)
    straight, resumed = final_parameters(tmp_path / "straight"), final_parameters(tmp_path / "resumed")
    assert straight["meta"]["iteration"] == resumed["meta"]["iteration"] == 6
    assert straight["meta"]["sampler"] == resumed["meta"]["sampler"]
    for group in ("model", "optimizer"):
        assert straight[group].keys() == resumed[group].keys()
        for name in straight[group]:
            # Bit for bit on either backend: no kernel sums with atomics (docs/cuda.md).
            np.testing.assert_array_equal(resumed[group][name], straight[group][name], err_msg=name)


def test_the_log_and_loss_curve_are_written(synthetic, tmp_path):
    out = Path(run(config(synthetic, tmp_path / "run", iterations=4, val_every=2)).out)
    records = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert {"metric", "ce", "lr", "grad_norm"} <= set(records[0])
    assert any("val_metric_max_f" in r for r in records)
    with Image.open(out / "loss.png") as picture:
        assert picture.size == (640, 520)


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


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synthetic, tmp_path, monkeypatch):
    loss_turns_nan_at(monkeypatch, 3)
    cfg = config(synthetic, tmp_path / "run", iterations=5, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at iteration 3.*last good checkpoint is kept"):
        run(cfg)
    assert final_parameters(cfg.out)["meta"]["iteration"] == 2


def test_an_interrupt_saves_at_the_end_of_the_iteration_and_resume_finishes(synthetic, tmp_path, monkeypatch):
    cfg = config(synthetic, tmp_path / "run", iterations=5)
    interrupted_run(cfg, monkeypatch, 2, signal.SIGINT)
    assert final_parameters(cfg.out)["meta"]["iteration"] == 2
    run(cfg, resume=True)
    run(config(synthetic, tmp_path / "straight", iterations=5))
    name = "ce_head.layers.0.weight"
    np.testing.assert_array_equal(final_parameters(cfg.out)["model"][name], final_parameters(tmp_path / "straight")["model"][name], err_msg=name)


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


def test_resume_keeps_the_saved_configuration(synthetic, tmp_path):
    run(config(synthetic, tmp_path / "run", iterations=2, lr=0.02))
    resumed = run(TrainConfig(out=str(tmp_path / "run")), resume=True)
    # The run's own length, not the preset's 2000 iterations.
    assert (resumed.data, resumed.lr, resumed.image_size, resumed.iterations) == (str(synthetic), 0.02, 32, 2)
    # The full original command line with --resume added is accepted.
    assert run(config(synthetic, tmp_path / "run", iterations=2, lr=0.02), resume=True).iterations == 2


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
                     "--iterations", 2, "--batch-size", 4)
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


# --- Issue 9: run folders, divergence, resume, splits and checkpoints ------------------------------
# The exceptions are matched by their base class and message, so these tests also run (and fail
# for the right reason) against the code before the fixes.

def log_rows(out):
    return [json.loads(line) for line in open(Path(out) / "log.jsonl")]


def test_a_new_run_refuses_a_folder_that_holds_one_and_overwrite_starts_over(synthetic, tmp_path):
    cfg = config(synthetic, tmp_path / "run", iterations=2)
    run(cfg)
    files = {name: (Path(cfg.out) / name).read_bytes() for name in ("checkpoint.npz", "log.jsonl")}
    with pytest.raises(RuntimeError, match=r"already holds a run.*--resume.*--overwrite"):
        run(config(synthetic, tmp_path / "run", iterations=3))
    assert {name: (Path(cfg.out) / name).read_bytes() for name in files} == files  # nothing deleted or replaced
    training.train(config(synthetic, tmp_path / "run", iterations=3), stream=io.StringIO(), overwrite=True)
    assert [r["iteration"] for r in log_rows(cfg.out) if "loss" in r] == [1, 2, 3]


def test_a_run_folder_in_use_by_another_training_is_refused(synthetic, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "a+") as held:  # what a training running in another process holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="another training is using"):
            run(config(synthetic, out, iterations=1))
    assert not (out / "log.jsonl").exists() and not (out / "checkpoint.npz").exists()
    run(config(synthetic, out, iterations=1))  # free again once the other one has ended


def test_resume_drops_the_log_rows_after_the_checkpoint_and_the_temporary_files(synthetic, tmp_path, monkeypatch):
    real_loss = loss_turns_nan_at(monkeypatch, 4)
    cfg = config(synthetic, tmp_path / "run", iterations=5, checkpoint_every=2)
    with pytest.raises(TrainingDiverged):
        run(cfg)
    monkeypatch.setattr(MEnet, "loss", real_loss)
    out = Path(cfg.out)
    with open(out / "log.jsonl", "a") as log:
        log.write('{"iteration": 4, "lo')  # a row cut short by a kill
    leftover = out / "checkpoint.npz.a1b2c3.tmp"  # a checkpoint write cut short by a kill
    leftover.write_bytes(b"PK half a zip")
    run(cfg, resume=True)
    assert [r["iteration"] for r in log_rows(out) if "loss" in r] == [1, 2, 3, 4, 5]
    assert not leftover.exists()


def test_a_validation_row_is_on_disk_before_the_next_iteration(synthetic, tmp_path, monkeypatch):
    real_loss = MEnet.loss
    seen = []

    def loss_reading_the_log(self, out, masks):
        log = Path(tmp_path / "run" / "log.jsonl")
        seen.append(any("val_metric_max_f" in line for line in log.read_text().splitlines()) if log.exists() else False)
        return real_loss(self, out, masks)
    monkeypatch.setattr(MEnet, "loss", loss_reading_the_log)
    run(config(synthetic, tmp_path / "run", iterations=3, val_every=2))
    assert seen == [False, False, True]  # a kill during iteration 3 would keep it


def test_divergence_without_a_nan_loss_stops_the_run(synthetic, tmp_path):
    # lr 1e6: the loss stays finite while a batch-norm running variance overflows (seen at
    # iteration 3 on the CPU), or the gradient norm does first (seen on an H100).
    cfg = config(synthetic, tmp_path / "run", iterations=6, lr=1e6, warmup=0, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"(NaN or infinite|gradient norm became (nan|inf)).*at iteration \d"
                                               r".*last good checkpoint is kept"):
        run(cfg)
    saved = final_parameters(cfg.out)  # finite, or load_checkpoint would refuse it
    assert saved["meta"]["iteration"] < 6
    assert all(np.isfinite(a).all() for group in ("model", "optimizer") for a in saved[group].values())


def test_an_infinite_gradient_stops_the_run(synthetic, tmp_path, monkeypatch):
    real_step = training.SGD.step
    calls = []

    def step_with_an_infinite_gradient(self):
        real_step(self)
        calls.append(1)
        return float("inf") if len(calls) == 2 else 1.0
    monkeypatch.setattr(training.SGD, "step", step_with_an_infinite_gradient)
    with pytest.raises(TrainingDiverged, match="gradient norm became inf at iteration 2"):
        run(config(synthetic, tmp_path / "run", iterations=3))


def test_a_divergence_before_any_checkpoint_does_not_claim_one_is_kept(synthetic, tmp_path, monkeypatch):
    def nan_loss(self, out, masks):
        total, parts = real_loss(self, out, masks)
        return total * float("nan"), parts
    real_loss = MEnet.loss
    monkeypatch.setattr(MEnet, "loss", nan_loss)
    with pytest.raises(TrainingDiverged) as caught:
        run(config(synthetic, tmp_path / "run", iterations=3))
    assert "is kept" not in str(caught.value) and "No checkpoint had been saved" in str(caught.value)


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


def small_dataset(root, count):
    return make_synthetic_dataset(root, count=count, seed=2, min_side=40, max_side=48)


def test_a_small_dataset_trains_validates_and_keeps_its_checkpoint(tmp_path):
    data = small_dataset(tmp_path / "small", 10)
    cfg = config(data, tmp_path / "run", iterations=2, batch_size=4, val_every=1)
    train_set, val_set, test_set = training.datasets(cfg)
    assert (len(train_set), len(val_set), len(test_set)) == (8, 1, 1)
    run(cfg)
    assert sum("val_metric_max_f" in r for r in log_rows(cfg.out)) == 2


def test_a_failing_final_evaluation_does_not_cost_the_checkpoint(synthetic, tmp_path, monkeypatch):
    def failing_evaluation(model, dataset, **kwargs):
        raise ValueError("evaluate: no image could be decoded")
    monkeypatch.setattr(training, "evaluate", failing_evaluation)
    cfg = config(synthetic, tmp_path / "run", iterations=2)
    with pytest.raises(ValueError, match="decoded"):
        run(cfg)
    assert final_parameters(cfg.out)["meta"]["iteration"] == 2


@pytest.mark.parametrize("count", [3, 4, 7, 12, 19])
def test_every_default_split_of_three_or_more_pairs_has_all_three_parts(count):
    stems = [f"{i:03d}" for i in range(count)]
    splits = training_splits(stems, seed=0)
    assert all(len(splits[name]) >= 1 for name in ("train", "val", "test"))
    assert sorted(sum(splits.values(), [])) == stems


def test_split_sizes_have_flags_and_an_impossible_split_says_which():
    stems = [f"{i:03d}" for i in range(30)]
    splits = training_splits(stems, seed=0, val_count=4, test_count=0)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [26, 4, 0]
    with pytest.raises(ValueError, match="--val-count"):
        training_splits(stems[:2], seed=0)
    with pytest.raises(ValueError, match="--val-count.*--test-count"):
        training_splits(stems, seed=0, val_count=20, test_count=10)


def test_a_test_list_works_on_a_small_dataset(synthetic, tmp_path):
    test_list = tmp_path / "test.txt"
    stems = sorted(p.stem for p in synthetic.glob("*.jpg"))
    test_list.write_text("\n".join(stems[:10]))
    train_set, val_set, test_set = training.datasets(config(synthetic, tmp_path / "run", test_list=str(test_list)))
    assert (len(train_set), len(val_set), test_set.stems) == (18, 2, stems[:10])


def test_no_validation_and_no_test_split_when_asked(synthetic, tmp_path):
    cfg = config(synthetic, tmp_path / "run", iterations=2, val_every=1, val_count=0, test_count=0)
    run(cfg)
    assert not any("val_metric_max_f" in r for r in log_rows(cfg.out))
    assert training.test_report(cfg, stream=io.StringIO()) is None


@pytest.mark.parametrize("batch_size, warned", [(2, True), (4, False)])
def test_a_batch_too_small_for_the_deepest_batch_norms_is_warned_about(synthetic, tmp_path, batch_size, warned):
    # At S 32 the deepest level is 1 x 1: its batch norms normalise over batch_size values only.
    stream = io.StringIO()
    training.train(config(synthetic, tmp_path / "run", iterations=1, batch_size=batch_size), stream=stream)
    message = "its batch norms see only 2 values per channel in a batch of 2"
    assert (message in stream.getvalue()) == warned
    assert ("Use --batch-size 4 or more, or a larger --image-size" in stream.getvalue()) == warned
