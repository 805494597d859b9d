"""Saliency maps for your own images, each written at the image's own size.

    python examples/predict.py runs/menet-tiny/checkpoint.npz photo1.jpg photo2.png --out maps/
    python examples/predict.py runs/menet-tiny/checkpoint.npz holiday/ --out maps/   # every image in a folder

Writes NAME_metric.png (Eq. 5, the metric map), NAME_metric_paper.png (Eq. 5 with the paper
text's background estimate) and NAME_ce.png (the CE probability map). NAME is the image's stem;
where two inputs share a stem (d1/x.jpg and d2/x.jpg, photo.jpg and photo.png) it takes enough of
the folder or the extension to tell them apart (d1_x, d2_x; photo_jpg, photo_png), so every input
keeps its maps. Each map is written whole or not at all. Unreadable images (damaged, not an
image, too large for Pillow's decompression-bomb guard) and maps that cannot be written are
reported and skipped; the exit status is 1 if any were.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from minimenet.checkpoint import CheckpointError, load_model
from minimenet.data import read_image
from minimenet.inference import output_names, predict_image
from minimenet.plot import save_png

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm"}


def expand(paths):
    """The image files to process: files as given, folders expanded to the images directly in
    them (by extension, sorted); the same file given twice once. Also the folders with none."""
    files, empty, seen = [], [], set()
    for path in map(Path, paths):
        found = (sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
                 if path.is_dir() else [path])
        if path.is_dir() and not found:
            empty.append(path)
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, empty


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", help="image files, or folders of them")
    p.add_argument("--out", default="maps")
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as exc:
        sys.exit(f"error: {exc}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        sys.exit(f"error: cannot create the output folder --out {out}: {exc.strerror or exc}")
    try:
        images, empty = expand(args.images)
    except OSError as exc:
        sys.exit(f"error: cannot list {exc.filename}: {exc.strerror or exc}")
    for folder in empty:
        print(f"skipped {folder}: a folder with no images ({', '.join(sorted(IMAGE_EXTENSIONS))})", file=sys.stderr)
    failed = 0
    for path, name in zip(images, output_names(images)):
        try:
            image = read_image(path)
        except Exception as exc:  # Pillow raises many types (incl. DecompressionBombError) on bad files
            print(f"skipped {path}: cannot be read as an image ({type(exc).__name__}: {exc})", file=sys.stderr)
            failed += 1
            continue
        try:
            for kind, saliency in predict_image(model, image).items():
                save_png(np.rint(saliency * 255).astype(np.uint8), out / f"{name}_{kind}.png")
        except OSError as exc:
            print(f"failed {path}: cannot write its maps to {out} ({exc.strerror or exc})", file=sys.stderr)
            failed += 1
            continue
        print(f"{path} -> {out / (name + '_*.png')}")
    if failed or empty or not images:
        sys.exit(f"{failed} of {len(images)} images could not be processed"
                 + (f"; {len(empty)} folders held no images" if empty else ""))


if __name__ == "__main__":
    main()
