"""minimenet/train.py, the loop: resume equality, NaN and divergence stops, interruption, the log and
the loss curve, the learning-rate schedule, validation rows, the final evaluation and small data sets."""
import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import train as training
from minimenet.config import TrainConfig
from minimenet.data import make_synthetic_dataset
from minimenet.model import MEnet
from minimenet.train import TrainingDiverged

from conftest import config, final_parameters, log_rows, loss_turns_nan_at, run


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


def test_learning_rate_warms_up_linearly_then_stays():
    cfg = TrainConfig(lr=0.1, warmup=4)
    assert [training.learning_rate(cfg, i) for i in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_learning_rate_is_divided_by_ten_at_sixty_and_ninety_percent():
    paper = TrainConfig(preset="paper")
    lrs = {i: training.learning_rate(paper, i) for i in (0, 59_999, 60_000, 89_999, 90_000, 99_999)}
    assert lrs == pytest.approx({0: 0.1, 59_999: 0.1, 60_000: 0.01, 89_999: 0.01, 90_000: 0.001, 99_999: 0.001})
    tiny = TrainConfig(preset="tiny", iterations=2000, warmup=10)
    assert training.learning_rate(tiny, 0) == pytest.approx(0.01) and training.learning_rate(tiny, 9) == pytest.approx(0.1)
    assert training.learning_rate(tiny, 1199) == pytest.approx(0.1) and training.learning_rate(tiny, 1200) == pytest.approx(0.01)


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
