"""One image through a trained MEnet, as the paper's Fig. 7 shows it: the input, the thirteen
scale maps, the 16-dimensional features (projected to three colours), the CE map and the metric
maps.

    python examples/network_at_work.py runs/menet-tiny/checkpoint.npz photo.jpg --out fig7.png

Each scale map is min-max scaled on its own (they live on different scales, which is why the
feature head exists). The features are the unit vectors f / ||f|| projected on their three
principal directions over the image, each direction stretched to 0-255: pixels the metric loss
has pulled together share a colour.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from minimenet import Tensor, backend, l2_normalize, no_grad
from minimenet.checkpoint import CheckpointError, load_model
from minimenet.data import normalize, read_image, resize_for_evaluation
from minimenet.plot import _font

SCALE_NAMES = ["image", "e0", "e1", "e2", "e3", "e4", "e5", "g0", "g1", "g2", "g3", "g4", "d5"]


def stretch(values):
    """Any array -> uint8 0-255 by its own minimum and maximum (a constant array gives 0)."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    return np.zeros(values.shape, np.uint8) if span == 0 else np.rint((values - values.min()) / span * 255).astype(np.uint8)


def feature_colours(unit):
    """(C, H, W) unit features -> (H, W, 3) uint8: their projections on the top three principal axes."""
    flat = unit.reshape(unit.shape[0], -1).T
    centred = flat - flat.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes[:3].T
    if projected.shape[1] < 3:
        projected = np.pad(projected, ((0, 0), (0, 3 - projected.shape[1])))
    return np.stack([stretch(projected[:, k]) for k in range(3)], axis=1).reshape(unit.shape[1], unit.shape[2], 3)


def network_at_work(model, image):
    """{title: uint8 picture (S, S) or (S, S, 3)} for one RGB uint8 image."""
    if model.config.variant != "menet":
        raise ValueError(f"network_at_work: the {model.config.variant} variant has no feature map to draw; use a menet checkpoint")
    batch = backend.xp.asarray(normalize(resize_for_evaluation(image, model.config.image_size))[None])
    with no_grad():
        out = model.eval()(Tensor(batch))
    panels = {"input": backend.to_numpy(batch[0]).transpose(1, 2, 0).astype(np.uint8)}
    for name, scale_map in zip(SCALE_NAMES, backend.to_numpy(out.scale_maps.data[0])):
        panels[f"scale map: {name}"] = stretch(scale_map)
    panels["features (3 principal axes)"] = feature_colours(backend.to_numpy(l2_normalize(out.features, 0.0).data[0]))
    for name, saliency in model.saliency_maps(batch).items():
        panels[f"{name} map"] = np.rint(backend.to_numpy(saliency[0]) * 255).astype(np.uint8)
    return panels


def draw(panels, path, cell=160, columns=6):
    font = _font(13)
    header = 20
    rows = -(-len(panels) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * (cell + header)), "white")
    pen = ImageDraw.Draw(sheet)
    for k, (title, picture) in enumerate(panels.items()):
        left, top = (k % columns) * cell, (k // columns) * (cell + header)
        pen.text((left + cell / 2, top + header / 2), title, fill="black", font=font, anchor="mm")
        tile = Image.fromarray(picture).convert("RGB").resize((cell - 4, cell - 4), Image.NEAREST)
        sheet.paste(tile, (left + 2, top + header + 2))
    sheet.save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("image")
    p.add_argument("--out", default="network_at_work.png", help="the PNG to write")
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
        image = read_image(args.image)
        panels = network_at_work(model, image)
        draw(panels, Path(args.out))
    except (CheckpointError, ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
