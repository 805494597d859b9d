"""The example scripts (examples/train.py, evaluate.py, predict.py) on folders of both layouts, and
their messages for a wrongly laid out folder and a bad checkpoint."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image


ROOT = Path(__file__).resolve().parents[1]


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
