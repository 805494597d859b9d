"""Saliency maps for your own images, each written at the image's own size.

    python examples/predict.py runs/menet-tiny/checkpoint.npz photo1.jpg photo2.png --out maps/

Writes NAME_metric.png (Eq. 5, the metric map), NAME_metric_paper.png (Eq. 5 with the paper
text's background estimate) and NAME_ce.png (the CE probability map).
Unreadable images are reported and skipped.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from minimenet.inference import predict_image
from minimenet.train import CheckpointError, load_model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", default="maps")
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as exc:
        sys.exit(f"error: {exc}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in map(Path, args.images):
        try:
            with Image.open(path) as handle:
                image = np.asarray(handle.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            print(f"skipped {path}: cannot be read as an image ({exc})", file=sys.stderr)
            failed += 1
            continue
        for name, saliency in predict_image(model, image).items():
            Image.fromarray(np.rint(saliency * 255).astype(np.uint8)).save(out / f"{path.stem}_{name}.png")
        print(f"{path} -> {out / (path.stem + '_*.png')}")
    if failed:
        sys.exit(f"{failed} of {len(args.images)} images could not be read")


if __name__ == "__main__":
    main()
