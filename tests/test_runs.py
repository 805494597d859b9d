"""minimenet/runs.py: run folders (an existing run refused, the lock against a second training) and
the clean-up on resume (log rows after the checkpoint, temporary files)."""
import io
from pathlib import Path

import pytest

from minimenet import train as training
from minimenet.model import MEnet
from minimenet.train import TrainingDiverged

from conftest import config, log_rows, loss_turns_nan_at, run


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
