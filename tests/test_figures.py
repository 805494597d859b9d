"""The paper's figures as commands: Fig. 7, one image through the network."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimenet import nn
from minimenet.model import MEnet, MEnetConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import network_at_work  # noqa: E402


def test_feature_colours_separate_two_groups_of_unit_features():
    unit = np.zeros((16, 4, 6))
    unit[0, :, :3] = 1          # left half at e0
    unit[5, :, 3:] = 1          # right half at e5
    colours = network_at_work.feature_colours(unit)
    assert colours.shape == (4, 6, 3) and colours.dtype == np.uint8
    left, right = colours[:, :3].reshape(-1, 3), colours[:, 3:].reshape(-1, 3)
    assert (left == left[0]).all() and (right == right[0]).all() and not (left[0] == right[0]).all()


def test_every_panel_of_fig7_is_drawn_for_one_image(tmp_path):
    nn.manual_seed(0)
    model = MEnet(MEnetConfig(image_size=32, width=2))
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    panels = network_at_work.network_at_work(model, image)
    names = list(panels)
    assert names[0] == "input" and len([n for n in names if n.startswith("scale map")]) == 13
    assert {"features (3 principal axes)", "ce map", "metric map", "metric_paper map"} <= set(names)
    assert all(p.dtype == np.uint8 and p.shape[:2] == (32, 32) for p in panels.values())
    assert any(np.ptp(panels[f"scale map: {n}"]) > 0 for n in ("image", "e0", "g0"))
    network_at_work.draw(panels, tmp_path / "fig7.png")
    assert Image.open(tmp_path / "fig7.png").size == (6 * 160, 3 * 180)  # 18 panels


def test_an_ablation_without_features_is_a_clear_error():
    model = MEnet(MEnetConfig(image_size=32, width=2, variant="ce-only"))
    with pytest.raises(ValueError, match="ce-only variant has no feature map"):
        network_at_work.network_at_work(model, np.zeros((32, 32, 3), np.uint8))


def test_the_command_reports_a_missing_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "network_at_work.py"), str(tmp_path / "none.npz"),
                             str(tmp_path / "x.jpg")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
