"""A baseline that looks at no pixel: a centred Gaussian blob as every image's saliency map.

    python examples/centre_prior.py ~/SOD --out maps/centre-prior
    python examples/evaluate.py ~/SOD --maps maps/centre-prior          # score it like any method

Writes STEM.png for each image of the dataset, at the image's size: exp(-((y - H/2)^2 / (2 (sigma H)^2)
+ (x - W/2)^2 / (2 (sigma W)^2))), scaled to 0-255. A model that does not beat this has learnt
nothing about saliency beyond "objects sit in the middle".
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from minimenet.data import DatasetError, SaliencyDataset
from minimenet.plot import save_png


def centre_prior(height, width, sigma):
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--out", required=True, help="folder for the maps (named like the images, .png)")
    p.add_argument("--sigma", type=float, default=0.15, help="standard deviation as a fraction of each side")
    args = p.parse_args(argv)
    if not args.sigma > 0:
        sys.exit(f"error: --sigma must be positive, got {args.sigma}")
    try:
        dataset = SaliencyDataset(args.dataset)
    except DatasetError as exc:
        sys.exit(f"error: {exc}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index, stem in enumerate(dataset.stems):
        sample = dataset.load(index)
        if sample is not None:
            save_png(np.rint(centre_prior(*sample.mask.shape, args.sigma) * 255).astype(np.uint8), out / f"{stem}.png")
    print(f"wrote {len(dataset)} maps to {out}")


if __name__ == "__main__":
    main()
