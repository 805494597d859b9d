"""examples/evaluate.py beyond Table I: distortions (Table II), the noise sweep (Fig. 8), and
scoring other methods' saliency maps beside MEnet's."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import train as training
from minimenet.data import SaliencyDataset, evaluation_batches, make_synthetic_dataset, resize_saliency_map
from minimenet.distort import Distortion
from minimenet.inference import score_map_folder
from minimenet.metrics import SaliencyMetrics
from minimenet.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", count=12, seed=2, min_side=40, max_side=56)


@pytest.fixture(scope="module")
def checkpoint(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = TrainConfig(data=str(data), out=str(out), image_size=32, width=2, iterations=2, batch_size=4,
                      val_every=100, checkpoint_every=100)
    training.train(cfg, stream=io.StringIO())
    return out / "checkpoint.npz"


def evaluate(*args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_distortions_reach_the_images_and_never_the_masks(data):
    dataset = SaliencyDataset(data)
    clean = list(evaluation_batches(dataset, 32, 4))
    noisy = list(evaluation_batches(dataset, 32, 4, Distortion("awgn", 0.02)))
    for a, b in zip(clean, noisy):
        assert not np.array_equal(a.images, b.images)
        for mask_a, mask_b in zip(a.masks, b.masks):
            np.testing.assert_array_equal(mask_a, mask_b)


def test_table_ii_is_printed_and_saved_and_a_rerun_gives_the_same_numbers(checkpoint, data, tmp_path):
    runs = [evaluate(checkpoint, data, "--distort", "awgn", "--distort", "jpeg:20", "--out", tmp_path / f"e{k}") for k in (0, 1)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "Table II layout: max F / MAE" in run.stdout and "awgn-random" in run.stdout and "jpeg-20" in run.stdout
    first, second = (json.loads((tmp_path / f"e{k}" / "results.json").read_text()) for k in (0, 1))
    assert first == second
    distorted = first["synthetic"]["distorted"]
    assert set(distorted) == {"awgn-random", "jpeg-20"} and set(distorted["jpeg-20"]) == {"metric", "metric_paper", "ce"}
    assert distorted["awgn-random"]["ce"]["mae"] != first["synthetic"]["ce"]["mae"]
    assert (tmp_path / "e0" / "synthetic_awgn-random_pr.png").exists()
    other_seed = evaluate(checkpoint, data, "--distort", "awgn", "--seed", "1", "--out", tmp_path / "e2")
    assert other_seed.returncode == 0, other_seed.stderr
    assert json.loads((tmp_path / "e2" / "results.json").read_text())["synthetic"]["distorted"] != distorted


def test_noise_sweep_writes_fig8(checkpoint, data, tmp_path):
    run = evaluate(checkpoint, data, "--noise-sweep", "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    sweep = json.loads((tmp_path / "results.json").read_text())["synthetic"]["noise_sweep"]
    assert sweep["variance"][0] == 0 and len(sweep["ce"]) == len(sweep["variance"]) == len(sweep["metric"])
    assert sweep["ce"][0] == pytest.approx(json.loads((tmp_path / "results.json").read_text())["synthetic"]["ce"]["max_f"])
    assert (tmp_path / "synthetic_noise_sweep.png").exists()


def write_maps(data, folder, skip=()):
    folder.mkdir()
    for mask_path in sorted(Path(data).glob("*.png")):
        if mask_path.stem in skip:
            continue
        mask = np.asarray(Image.open(mask_path).convert("L"), dtype=float)
        noisy = np.clip(mask * 0.7 + np.random.default_rng(len(mask_path.stem)).normal(40, 30, mask.shape), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).resize((32, 32)).save(folder / mask_path.name)
    return folder


def test_other_methods_maps_are_scored_like_the_network_maps(data, tmp_path):
    maps = write_maps(data, tmp_path / "method_a", skip={"00003"})
    dataset = SaliencyDataset(data)
    results, missing = score_map_folder(maps, dataset)
    assert missing == ["00003"] and results["count"] == len(dataset) - 1
    expected = SaliencyMetrics()
    for index, stem in enumerate(dataset.stems):
        if stem != "00003":
            mask = dataset.load(index).mask
            saliency = np.asarray(Image.open(maps / f"{stem}.png"), dtype=np.float32) / 255
            expected.update(resize_saliency_map(saliency, mask.shape), mask)
    assert results["max_f"] == pytest.approx(expected.results()["max_f"], abs=1e-6)
    run = evaluate(data, "--maps", maps, "--out", tmp_path / "out")   # no checkpoint: maps alone
    assert run.returncode == 0, run.stderr
    table = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(table["synthetic"]) >= {"method_a", "images"} and "ce" not in table["synthetic"]
    assert table["synthetic"]["method_a"]["max_f"] == pytest.approx(results["max_f"])


def test_evaluate_argument_errors_are_one_line(data, tmp_path, checkpoint):
    nothing = evaluate(data, "--out", tmp_path)
    assert nothing.returncode == 1 and "nothing to score" in nothing.stderr
    no_network = evaluate(data, "--maps", tmp_path, "--distort", "awgn")
    assert no_network.returncode == 1 and "need a checkpoint" in no_network.stderr
    bad = evaluate(checkpoint, data, "--distort", "blur")
    assert bad.returncode == 2 and "kind must be one of" in bad.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    unmatched = evaluate(data, "--maps", empty, "--out", tmp_path / "o")
    assert unmatched.returncode == 1 and "no map in" in unmatched.stderr and "Traceback" not in unmatched.stderr


def table3(*args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / "table3.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_table3_trains_the_three_variants_alike_and_a_rerun_keeps_them(data, tmp_path):
    options = ["--data", data, "--out", tmp_path / "t3", "--iterations", 2, "--image-size", 32, "--width", 2, "--batch-size", 4]
    first = table3(*options)
    assert first.returncode == 0, first.stderr
    table = json.loads((tmp_path / "t3" / "table3.json").read_text())
    assert set(table) == {"ce-plain ce", "ce-only ce", "menet metric", "menet ce"}
    assert all(set(cells) == {"clean", "awgn-random", "jpeg-random"} for cells in table.values())
    for variant in ("ce-plain", "ce-only", "menet"):
        meta = json.loads(np.load(tmp_path / "t3" / variant / "checkpoint.npz")["meta"].tobytes())
        assert meta["iteration"] == 2 and meta["train_config"]["seed"] == 0 and meta["train_config"]["variant"] == variant
    second = table3(*options)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already trained") == 3
    assert json.loads((tmp_path / "t3" / "table3.json").read_text()) == table


def test_table3_resumes_an_interrupted_variant(data, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from minimenet.model import MEnet
    sys.path.insert(0, str(ROOT / "examples"))
    import table3 as command
    real_loss, calls = MEnet.loss, []

    def loss_then_sigterm(self, out, masks):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)   # during ce-plain's second iteration
        return real_loss(self, out, masks)
    options = ["--data", str(data), "--out", str(tmp_path / "t3"), "--iterations", "3", "--image-size", "32", "--width", "2",
               "--batch-size", "4"]
    monkeypatch.setattr(MEnet, "loss", loss_then_sigterm)
    with pytest.raises(SystemExit, match="run the same command again"):
        command.main(options)
    monkeypatch.setattr(MEnet, "loss", real_loss)
    command.main(options)
    assert "ce-plain: resuming at iteration 2 of 3" in capsys.readouterr().out
    assert (tmp_path / "t3" / "table3.md").exists()


def test_the_centre_prior_baseline_is_scored_like_a_method(data, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    from centre_prior import centre_prior
    blob = centre_prior(40, 60, 0.15)
    assert blob.shape == (40, 60) and blob.argmax() == np.ravel_multi_index((19, 29), (40, 60))
    np.testing.assert_allclose(blob, blob[::-1, ::-1])
    written = subprocess.run([sys.executable, str(ROOT / "examples" / "centre_prior.py"), str(data), "--out", str(tmp_path / "prior")],
                             capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    scored = evaluate(data, "--maps", tmp_path / "prior", "--out", tmp_path / "eval")
    assert scored.returncode == 0, scored.stderr
    table = json.loads((tmp_path / "eval" / "results.json").read_text())["synthetic"]
    assert 0 < table["prior"]["max_f"] <= 1 and table["images"] == 12
