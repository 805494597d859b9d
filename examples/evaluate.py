"""Evaluate a trained MEnet (and saliency maps of other methods) on datasets, as in the paper's
Tables I and II and Figs. 6 and 8.

    python examples/evaluate.py runs/menet-tiny/checkpoint.npz ~/ECSSD ~/DUTS-TE --out eval/
    python examples/evaluate.py CHECKPOINT DATASET --save-maps          # also write every map as a PNG
    python examples/evaluate.py CHECKPOINT DATASET --distort awgn --distort jpeg   # Table II: clean / AWGN / JPEG
    python examples/evaluate.py CHECKPOINT DATASET --distort awgn:0.01  # one fixed strength
    python examples/evaluate.py CHECKPOINT DATASET --noise-sweep        # Fig. 8: F against the noise variance
    python examples/evaluate.py CHECKPOINT DATASET --maps ~/maps/DSS --maps ~/maps/NLDF   # other methods beside MEnet
    python examples/evaluate.py DATASET --maps ~/maps/DSS               # maps alone, no checkpoint

For each dataset and each saliency map (the metric map of Eq. 5 with the model's background
reading as "metric" and the other reading beside it, e.g. "metric_paper"; the CE map; each
--maps folder, named after it, its files matched to images by stem): S-measure, weighted F, MAE,
adaptive / mean / max E-measure and adaptive / mean / max F, in PySODMetrics' column order, a
precision-recall PNG and results.json. Max F follows PySODMetrics' convention (the mean of the
per-image F curves); the MATLAB SOD toolbox's (F of the mean precision and recall) is in the JSON.

Distortions (minimenet.distort) corrupt each image, never its mask, before the network sees it:
"awgn" and "jpeg" alone draw a random strength per image (AWGN variance 0.001-0.05 on [0, 1]
intensities, JPEG quality 10-50) from --seed, so a rerun scores the same corrupted set. With
distortions, a Table II layout (max F / MAE per condition) closes the output, each condition
gets its own PR curves, and results.json holds them under "distorted". --maps folders are scored
on clean images only.

A dataset is named after its folder; two folders of one name (e1/data, e2/data) get their parents
too (e1_data, e2_data). Every folder is checked before the first is evaluated; "images" in
results.json counts the images scored (undecodable pairs are left out and counted apart).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minimenet.checkpoint import CheckpointError, load_model
from minimenet.data import DatasetError, SaliencyDataset, evaluation_batches, resize_saliency_map
from minimenet.distort import KINDS, Distortion
from minimenet.inference import evaluate, map_names, output_names, predict_batch, score_map_folder
from minimenet.plot import atomic_write, line_chart, plot_pr_curve, save_png

# PySODMetrics' column order, with the labels people print.
COLUMNS = [("s_measure", "S"), ("weighted_f", "wF"), ("mae", "MAE"), ("adaptive_e", "adpE"), ("mean_e", "meanE"),
           ("max_e", "maxE"), ("adaptive_f", "adpF"), ("mean_f", "meanF"), ("max_f", "maxF")]
NOISE_SWEEP_VARIANCES = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)


def parse_distortion(text):
    kind, _, strength = text.partition(":")
    try:
        return Distortion(kind, float(strength) if strength else None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (write KIND or KIND:STRENGTH with KIND one of {', '.join(KINDS)})") from None


def save_maps(model, dataset, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for batch in evaluation_batches(dataset, model.config.image_size):
        for name, maps in predict_batch(model, batch.images).items():
            for saliency, mask, stem in zip(maps, batch.masks, batch.stems):
                full = resize_saliency_map(saliency, mask.shape)
                save_png(np.rint(full * 255).astype(np.uint8), folder / f"{stem}_{name}.png")


def scalars(results):
    return {k: v for k, v in results.items() if np.isscalar(v)}


def print_row(dataset, condition, name, r):
    print(f"{dataset:<16} {condition:<13} {name:<14} " + " ".join(f"{r[key]:>6.4f}" for key, _ in COLUMNS))


def split_inputs(inputs, maps):
    """[CHECKPOINT.npz] DATASET... -> (checkpoint or None, dataset folders)."""
    checkpoint = inputs[0] if inputs and inputs[0].endswith(".npz") else None
    folders = inputs[1:] if checkpoint else inputs
    if not folders:
        sys.exit("error: give at least one dataset folder after the checkpoint")
    if checkpoint is None and not maps:
        sys.exit("error: nothing to score: give a checkpoint (a .npz file) before the datasets, or --maps FOLDER")
    return checkpoint, folders


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="[CHECKPOINT] DATASET",
                   help="a checkpoint (.npz), then dataset folders (any layout SaliencyDataset detects)")
    p.add_argument("--out", default="eval", help="folder for results.json, PR curves and maps")
    p.add_argument("--save-maps", action="store_true", help="write each saliency map as a PNG")
    p.add_argument("--maps", action="append", default=[], metavar="FOLDER",
                   help="a folder of saliency maps named by image stem (another method's), scored beside MEnet")
    p.add_argument("--distort", action="append", default=[], type=parse_distortion, metavar="KIND[:STRENGTH]",
                   help="also evaluate on images corrupted by awgn (variance) or jpeg (quality); "
                        "no strength: a random one per image")
    p.add_argument("--noise-sweep", action="store_true",
                   help=f"Fig. 8: max F of each map against the AWGN variance ({', '.join(map(str, NOISE_SWEEP_VARIANCES))})")
    p.add_argument("--seed", type=int, default=0, help="seed of the distortions' random draws")
    args = p.parse_args(argv)
    checkpoint, folders = split_inputs(args.inputs, args.maps)
    if checkpoint is None and (args.distort or args.noise_sweep or args.save_maps):
        sys.exit("error: --distort, --noise-sweep and --save-maps need a checkpoint to run the network")
    model = None
    if checkpoint:
        try:
            model = load_model(checkpoint)
        except CheckpointError as exc:
            sys.exit(f"error: {exc}")
    for folder in args.maps:
        if not Path(folder).is_dir():
            sys.exit(f"error: --maps {folder} is not a folder of saliency maps")
    datasets = {}
    # Every folder is checked before the first is evaluated; two folders of one name (e1/data,
    # e2/data) are told apart by their parents (e1_data, e2_data).
    for folder, name in zip(folders, output_names(folders, keep_suffix=True)):
        try:
            datasets[name] = SaliencyDataset(folder)
        except DatasetError as exc:
            sys.exit(f"error: {exc}")
        except OSError as exc:
            sys.exit(f"error: cannot read the dataset folder {folder}: {exc.strerror or exc}")
    distortions = [Distortion(d.kind, d.strength, args.seed) for d in args.distort]
    method_names = output_names(args.maps, keep_suffix=True)
    out = Path(args.out)
    table, failed = {}, []

    def progress(label):
        return lambda done, total: print(f"\r{label}: {done}/{total} images", end="", file=sys.stderr)

    try:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{'dataset':<16} {'condition':<13} {'map':<14} " + " ".join(f"{label:>6}" for _, label in COLUMNS))
        for name, dataset in datasets.items():
            entry, curves = {}, {}
            try:
                if model:
                    scores = evaluate(model, dataset, progress=progress(name))
                    print(file=sys.stderr)
                    for kind in map_names(scores):
                        entry[kind] = scores[kind]
                for method, folder in zip(method_names, args.maps):
                    entry[method], missing = score_map_folder(folder, dataset, progress(f"{name} / {method}"))
                    print(file=sys.stderr)
                    if missing:
                        print(f"{method}: no map for {len(missing)} of {len(dataset)} images of {name} "
                              f"(e.g. {missing[0]}); scored the others", file=sys.stderr)
            except DatasetError as exc:
                print(f"\nskipped {name}: {exc}", file=sys.stderr)
                failed.append(name)
                continue
            for kind, r in entry.items():
                print_row(name, "clean", kind, r)
                curves[kind if kind in method_names else f"{kind} map"] = (r["precision"], r["recall"])
            plot_pr_curve(curves, out / f"{name}_pr.png", title=f"Precision-recall on {name}")
            table[name] = {kind: scalars(r) for kind, r in entry.items()}
            # The images actually scored: pairs that cannot be decoded are left out of the metrics.
            table[name]["images"] = next(iter(entry.values()))["count"]
            table[name]["unreadable_pairs"] = len(dataset) - table[name]["images"]
            table[name]["folder"] = str(Path(dataset.root).resolve())
            for distortion in distortions:
                scores = evaluate(model, dataset, progress=progress(f"{name} / {distortion.name}"), distortion=distortion)
                print(file=sys.stderr)
                kinds = map_names(scores)
                for kind in kinds:
                    print_row(name, distortion.name, kind, scores[kind])
                table[name].setdefault("distorted", {})[distortion.name] = {kind: scalars(scores[kind]) for kind in kinds}
                plot_pr_curve({f"{kind} map": (scores[kind]["precision"], scores[kind]["recall"]) for kind in kinds},
                              out / f"{name}_{distortion.name}_pr.png", title=f"Precision-recall on {name}, {distortion.name}")
            if args.noise_sweep:
                sweep = noise_sweep(model, dataset, args.seed, progress(f"{name} / noise sweep"))
                table[name]["noise_sweep"] = sweep
                line_chart({f"{kind} map": (sweep["variance"], sweep[kind]) for kind in sweep if kind != "variance"},
                           out / f"{name}_noise_sweep.png", f"Max F under additive Gaussian noise on {name}",
                           "noise variance (intensities in [0, 1])", "max F", y_range=(0, 1), legend="lower left")
            atomic_write(out / "results.json", lambda handle: handle.write(json.dumps(table, indent=1).encode()))
            if args.save_maps:
                save_maps(model, dataset, out / f"{name}_maps")
    except OSError as exc:
        sys.exit(f"error: cannot write to --out {out}: {exc.strerror or exc}"
                 + (f" ({exc.filename})" if exc.filename else "")
                 + (f"; results.json holds the datasets evaluated before ({', '.join(table)})" if table else ""))
    if distortions:
        print_table_ii(table, distortions)
    if table:
        print(f"wrote {out / 'results.json'} and the PNGs in {out}")
    if failed:
        sys.exit(f"{len(failed)} of {len(datasets)} datasets could not be evaluated ({', '.join(failed)})")


def noise_sweep(model, dataset, seed, progress):
    """{"variance": [...], map name: [max F at each variance]} over NOISE_SWEEP_VARIANCES."""
    sweep = {"variance": list(NOISE_SWEEP_VARIANCES)}
    for variance in NOISE_SWEEP_VARIANCES:
        distortion = Distortion("awgn", variance, seed) if variance else None
        scores = evaluate(model, dataset, progress=progress, distortion=distortion)
        for kind in map_names(scores):
            sweep.setdefault(kind, []).append(scores[kind]["max_f"])
    print(file=sys.stderr)
    return sweep


def print_table_ii(table, distortions):
    """The paper's Table II layout: max F / MAE of each map, clean and under each distortion."""
    conditions = ["clean"] + [d.name for d in distortions]
    print("\nTable II layout: max F / MAE")
    print(f"{'dataset':<16} {'map':<14} " + " ".join(f"{c:>15}" for c in conditions))
    for name, entry in table.items():
        for kind in entry.get("distorted", {}).get(conditions[1], {}):
            cells = [entry[kind]] + [entry["distorted"][c][kind] for c in conditions[1:]]
            print(f"{name:<16} {kind:<14} " + " ".join(f"{r['max_f']:>7.4f} / {r['mae']:.4f}" for r in cells))


if __name__ == "__main__":
    main()
