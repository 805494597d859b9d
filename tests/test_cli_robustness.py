"""The example scripts as a careless or adversarial user meets them (issue 9): every input keeps
its output, outputs are whole or absent, bad files and settings are one-line reports, and a
checkpoint that cannot be used is refused. The scripts' ``main`` runs in this process (a
traceback would fail the test as an uncaught exception); one run per script goes through a
subprocess to check what a user sees."""
import importlib.util
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import data as data_module
from minimenet import train as training
from minimenet.data import make_synthetic_dataset
from minimenet.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(capsys, name, *args):
    """(exit status, stdout, stderr) of examples/NAME.py's main, as the shell would show them."""
    try:
        example(name).main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    if isinstance(code, str):
        err, code = err + code + "\n", 1
    return code or 0, out, err


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", count=12, seed=3, min_side=40, max_side=48)


@pytest.fixture(scope="module")
def checkpoint(synthetic, tmp_path_factory):
    cfg = TrainConfig(data=str(synthetic), out=str(tmp_path_factory.mktemp("run") / "run"), image_size=32, width=2,
                      iterations=1, batch_size=4, val_every=100, checkpoint_every=100)
    training.train(cfg, stream=io.StringIO())
    return Path(cfg.out) / "checkpoint.npz"


def an_image(synthetic):
    return sorted(synthetic.glob("*.jpg"))[0]


def bomb_png(path, side=20000):
    """A valid-looking PNG header of side x side pixels: Pillow refuses it as a decompression bomb."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


# --- predict ---------------------------------------------------------------------------------------

def test_predict_keeps_one_output_per_input_and_expands_folders(checkpoint, synthetic, tmp_path, capsys):
    source = an_image(synthetic)
    for folder in ("d1", "d2", "album"):
        (tmp_path / folder).mkdir()
    shutil.copy(source, tmp_path / "d1" / "x.jpg")
    Image.open(source).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "d2" / "x.jpg")
    shutil.copy(source, tmp_path / "photo.jpg")
    Image.open(source).convert("L").save(tmp_path / "photo.png")
    shutil.copy(source, tmp_path / "album" / "a.jpg")
    shutil.copy(source, tmp_path / "album" / "b.jpg")
    code, out, err = cli(capsys, "predict", checkpoint, tmp_path / "d1" / "x.jpg", tmp_path / "d2" / "x.jpg",
                         tmp_path / "photo.jpg", tmp_path / "photo.png", tmp_path / "album", "--out", tmp_path / "maps")
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "maps").glob("*_ce.png"))
    assert written == ["a_ce.png", "b_ce.png", "d1_x_ce.png", "d2_x_ce.png", "photo_jpg_ce.png", "photo_png_ce.png"]
    d1, d2 = (np.asarray(Image.open(tmp_path / "maps" / f"{d}_x_ce.png")) for d in ("d1", "d2"))
    assert not np.array_equal(d1, d2)  # each is its own image's map, not one overwritten by the other


def test_predict_skips_a_decompression_bomb_and_goes_on(checkpoint, synthetic, tmp_path, capsys):
    bomb = bomb_png(tmp_path / "huge.png")
    image = an_image(synthetic)
    code, out, err = cli(capsys, "predict", checkpoint, bomb, image, "--out", tmp_path / "maps")
    assert code == 1 and "skipped" in err and "huge.png" in err and "1 of 2 images" in err
    assert (tmp_path / "maps" / f"{image.stem}_metric.png").exists()


def test_predict_writes_whole_maps_or_none_and_reports_a_full_disk(checkpoint, synthetic, tmp_path, capsys, monkeypatch):
    real_save = Image.Image.save
    calls = []

    def save_on_a_disk_that_fills_up(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            handle = open(fp, "wb") if isinstance(fp, (str, Path)) else fp
            handle.write(b"\x89PNG\r\n\x1a\n half")
            handle.flush()
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", save_on_a_disk_that_fills_up)
    first, second = sorted(synthetic.glob("*.jpg"))[:2]
    code, out, err = cli(capsys, "predict", checkpoint, first, second, "--out", tmp_path / "maps")
    assert code == 1 and "No space left on device" in err and "1 of 2 images" in err
    assert str(second) in out  # the image after the failure was still processed
    for png in (tmp_path / "maps").iterdir():
        with Image.open(png) as written:
            written.load()  # every file there is a whole PNG
    assert not list((tmp_path / "maps").glob("*.tmp"))


@pytest.mark.parametrize("script", ["predict", "evaluate"])
def test_an_unwritable_out_is_a_one_line_error(checkpoint, synthetic, tmp_path, capsys, script):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    inputs = an_image(synthetic) if script == "predict" else synthetic
    code, out, err = cli(capsys, script, checkpoint, inputs, "--out", blocker / "out")
    assert code == 1 and "error:" in err and "--out" in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_of_nan_weights_is_refused_by_predict_and_evaluate(checkpoint, synthetic, tmp_path, capsys):
    with np.load(checkpoint) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["model/ce_head.layers.0.weight"] = arrays["model/ce_head.layers.0.weight"] * np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **arrays)
    code, out, err = cli(capsys, "predict", bad, an_image(synthetic), "--out", tmp_path / "maps")
    assert code == 1 and "NaN or infinite" in err and not list((tmp_path / "maps").glob("*.png"))
    code, out, err = cli(capsys, "evaluate", bad, synthetic, "--out", tmp_path / "eval")
    assert code == 1 and "NaN or infinite" in err and not (tmp_path / "eval" / "results.json").exists()


# --- evaluate --------------------------------------------------------------------------------------

def test_evaluate_keeps_two_datasets_of_one_name_and_names_dot_after_its_folder(checkpoint, synthetic, tmp_path,
                                                                                 capsys, monkeypatch):
    for parent in ("e1", "e2"):
        shutil.copytree(synthetic, tmp_path / parent / "data")
    code, out, err = cli(capsys, "evaluate", checkpoint, tmp_path / "e1" / "data", tmp_path / "e2" / "data",
                         "--out", tmp_path / "eval")
    assert code == 0, err
    table = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {"e1_data", "e2_data"} <= set(table)
    assert (tmp_path / "eval" / "e1_data_pr.png").exists() and (tmp_path / "eval" / "e2_data_pr.png").exists()
    monkeypatch.chdir(synthetic)
    code, out, err = cli(capsys, "evaluate", checkpoint, ".", "--out", tmp_path / "dot")
    assert code == 0, err
    assert (tmp_path / "dot" / "synthetic_pr.png").exists() and not (tmp_path / "dot" / "_pr.png").exists()


def test_evaluate_checks_every_folder_before_evaluating_the_first(checkpoint, synthetic, tmp_path, capsys):
    code, out, err = cli(capsys, "evaluate", checkpoint, synthetic, tmp_path / "missing", "--out", tmp_path / "eval")
    assert code == 1 and "missing" in err and "synthetic" not in out
    assert not (tmp_path / "eval" / "results.json").exists()


def test_evaluate_counts_the_images_it_scored(checkpoint, synthetic, tmp_path, capsys, monkeypatch):
    real_load = data_module.SaliencyDataset.load

    def load_all_but_the_first(self, index):
        return None if self.samples[index].stem == self.samples[0].stem else real_load(self, index)
    monkeypatch.setattr(data_module.SaliencyDataset, "load", load_all_but_the_first)
    code, out, err = cli(capsys, "evaluate", checkpoint, synthetic, "--out", tmp_path / "eval")
    assert code == 0, err
    table = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert table["synthetic"]["images"] == 11


def test_evaluate_saves_maps_whole_or_not_at_all_and_keeps_results(checkpoint, synthetic, tmp_path, capsys, monkeypatch):
    real_save = Image.Image.save
    calls = []

    def save_on_a_disk_that_fills_up(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the PR curve, one map, then the disk is full
            handle = open(fp, "wb") if isinstance(fp, (str, Path)) else fp
            handle.write(b"")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", save_on_a_disk_that_fills_up)
    code, out, err = cli(capsys, "evaluate", checkpoint, synthetic, "--out", tmp_path / "eval", "--save-maps")
    last = err.strip().splitlines()[-1]  # after the progress line
    assert code == 1 and last.startswith("error:") and "No space left on device" in last
    assert "synthetic" in json.loads((tmp_path / "eval" / "results.json").read_text())
    maps = list((tmp_path / "eval" / "synthetic_maps").iterdir())
    assert maps and all(p.suffix == ".png" and p.stat().st_size > 0 for p in maps)


# --- train -----------------------------------------------------------------------------------------

def train_args(synthetic, out, *extra):
    return ["--data", synthetic, "--out", out, "--image-size", 32, "--width", 2, "--iterations", 1, "--batch-size", 4,
            *extra]


@pytest.mark.parametrize("flag, value", [("--checkpoint-every", 0), ("--lr", -1), ("--clip-norm", -1),
                                          ("--val-every", 0), ("--iterations", 0), ("--width", 0)])
def test_train_refuses_a_bad_setting_in_one_line_naming_it(synthetic, tmp_path, capsys, flag, value):
    code, out, err = cli(capsys, "train_msra10k", *train_args(synthetic, tmp_path / "run"), flag, value)
    assert code == 1 and flag in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_train_in_a_used_folder_and_a_resume_with_other_flags_are_one_line_errors(checkpoint, synthetic, tmp_path):
    out = checkpoint.parent
    before = checkpoint.read_bytes()

    def train_script(*args):
        return subprocess.run([sys.executable, str(ROOT / "examples" / "train_msra10k.py"), *map(str, args)],
                              capture_output=True, text=True, timeout=300)
    used = train_script(*train_args(synthetic, out))
    assert used.returncode == 1 and "Traceback" not in used.stderr
    assert "--resume" in used.stderr and "--overwrite" in used.stderr
    changed = train_script("--out", out, "--resume", "--lr", 5)
    assert changed.returncode == 1 and "Traceback" not in changed.stderr and "--lr 5.0" in changed.stderr
    assert checkpoint.read_bytes() == before
