"""Evaluate a trained MEnet on one or more datasets, as in the paper's Table I.

    python examples/evaluate.py runs/menet-tiny/checkpoint.npz ~/ECSSD ~/DUTS-TE --out eval/
    python examples/evaluate.py CHECKPOINT DATASET --save-maps     # also write every map as a PNG

For each dataset: max F, adaptive F and MAE of the metric map (Eq. 5, the model's configured
background reading as "metric" and the other beside it, e.g. "metric_paper") and of the CE map, a
precision-recall PNG, and results.json. Max F follows PySODMetrics' convention (the mean of the
per-image F curves); the MATLAB SOD toolbox's (F of the mean precision and recall) is in the JSON.
A dataset is named after its folder; two folders of one name (e1/data, e2/data) get their parents
too (e1_data, e2_data). Every folder is checked before the first is evaluated; "images" in
results.json counts the images scored (undecodable pairs are left out and counted apart).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minimenet.data import DatasetError, SaliencyDataset, evaluation_batches, resize_saliency_map
from minimenet.inference import evaluate, map_names, output_names, predict_batch
from minimenet.plot import atomic_write, plot_pr_curve, save_png
from minimenet.train import CheckpointError, load_model


def save_maps(model, dataset, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for batch in evaluation_batches(dataset, model.config.image_size):
        for name, maps in predict_batch(model, batch.images).items():
            for saliency, mask, stem in zip(maps, batch.masks, batch.stems):
                full = resize_saliency_map(saliency, mask.shape)
                save_png(np.rint(full * 255).astype(np.uint8), folder / f"{stem}_{name}.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("datasets", nargs="+", help="dataset folders (MSRA10K layout or images/ + masks/)")
    p.add_argument("--out", default="eval", help="folder for results.json, PR curves and maps")
    p.add_argument("--save-maps", action="store_true", help="write each saliency map as a PNG")
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as exc:
        sys.exit(f"error: {exc}")
    datasets = {}
    # Every folder is checked before the first is evaluated; two folders of one name (e1/data,
    # e2/data) are told apart by their parents (e1_data, e2_data).
    for folder, name in zip(args.datasets, output_names(args.datasets, keep_suffix=True)):
        try:
            datasets[name] = SaliencyDataset(folder)
        except DatasetError as exc:
            sys.exit(f"error: {exc}")
        except OSError as exc:
            sys.exit(f"error: cannot read the dataset folder {folder}: {exc.strerror or exc}")
    out = Path(args.out)
    table, failed = {}, []
    try:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{'dataset':<20} {'map':<14} {'max F':>7} {'adapt F':>8} {'MAE':>7}")
        for name, dataset in datasets.items():
            try:
                scores = evaluate(model, dataset, progress=lambda done, total: print(
                    f"\r{name}: {done}/{total} images", end="", file=sys.stderr))
            except DatasetError as exc:
                print(f"\nskipped {name}: {exc}", file=sys.stderr)
                failed.append(name)
                continue
            print(file=sys.stderr)
            curves = {}
            for kind in map_names(scores):
                r = scores[kind]
                print(f"{name:<20} {kind:<14} {r['max_f']:>7.4f} {r['adaptive_f']:>8.4f} {r['mae']:>7.4f}")
                curves[f"{kind} map"] = (r["precision"], r["recall"])
            plot_pr_curve(curves, out / f"{name}_pr.png", title=f"Precision-recall on {name}")
            table[name] = {kind: {k: v for k, v in scores[kind].items() if np.isscalar(v)} for kind in map_names(scores)}
            # The images actually scored: pairs that cannot be decoded are left out of the metrics.
            table[name]["images"] = scores[map_names(scores)[0]]["count"]
            table[name]["unreadable_pairs"] = len(dataset) - table[name]["images"]
            table[name]["folder"] = str(Path(dataset.root).resolve())
            atomic_write(out / "results.json", lambda handle: handle.write(json.dumps(table, indent=1).encode()))
            if args.save_maps:
                save_maps(model, dataset, out / f"{name}_maps")
    except OSError as exc:
        sys.exit(f"error: cannot write to --out {out}: {exc.strerror or exc}"
                 + (f" ({exc.filename})" if exc.filename else "")
                 + (f"; results.json holds the datasets evaluated before ({', '.join(table)})" if table else ""))
    if table:
        print(f"wrote {out / 'results.json'} and the precision-recall PNGs in {out}")
    if failed:
        sys.exit(f"{len(failed)} of {len(datasets)} datasets could not be evaluated ({', '.join(failed)})")


if __name__ == "__main__":
    main()
