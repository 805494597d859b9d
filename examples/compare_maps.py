"""Is one source of saliency maps clearly better than another on a dataset? A paired bootstrap.

    python examples/compare_maps.py ~/SOD runs/menet-tiny/checkpoint.npz centre-prior
    python examples/compare_maps.py ~/SOD runs/menet-tiny/checkpoint.npz:ce maps/published-method

A source is a checkpoint (its metric map; CHECKPOINT:ce or CHECKPOINT:metric_paper for another),
a folder of maps named like the dataset's images (STEM.png, as evaluate.py --maps reads them), or
``centre-prior``: the centred Gaussian of examples/centre_prior.py, a baseline that looks at no
pixel. Both sources are scored on the images they both have a map for, with PySODMetrics' max F
(the maximum over thresholds of the F curve averaged over images) and MAE. The images are then
resampled with replacement (--resamples times, seeded) and both scores recomputed on each
resample: the 2.5 and 97.5 percentiles of A's score minus B's are a 95 % interval for the
difference. "A is ahead" is said only when that interval excludes 0.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from centre_prior import centre_prior
from minimenet.checkpoint import CheckpointError, load_model
from minimenet.data import DatasetError, SaliencyDataset, resize_saliency_map
from minimenet.inference import MAP_EXTENSIONS, predict_image
from minimenet.metrics import f_measure, mean_absolute_error, precision_recall_curve

CENTRE_PRIOR = "centre-prior"
CENTRE_PRIOR_SIGMA = 0.15


def map_source(spec):
    """A function (stem, sample) -> map in [0, 1] at the mask's size, or None where the source
    has no map for that image; and the source's name."""
    if spec == CENTRE_PRIOR:
        return (lambda stem, sample: centre_prior(*sample.mask.shape, CENTRE_PRIOR_SIGMA)), spec
    path, _, map_name = spec.partition(":")
    if Path(path).is_dir() and not map_name:
        files = {p.stem: p for p in sorted(Path(path).iterdir()) if p.suffix.lower() in MAP_EXTENSIONS}

        def from_folder(stem, sample):
            if stem not in files:
                return None
            try:
                with Image.open(files[stem]) as handle:
                    saliency = np.asarray(handle.convert("L"), dtype=np.float32) / 255
            except (OSError, UnidentifiedImageError) as exc:
                raise DatasetError(f"the map {files[stem]} cannot be read ({exc}); replace or remove it") from None
            return resize_saliency_map(saliency, sample.mask.shape)
        return from_folder, spec
    model = load_model(path)
    map_name = map_name or "metric"

    def from_model(stem, sample):
        maps = predict_image(model, sample.image)
        if map_name not in maps:
            raise CheckpointError(f"{path} gives the maps {sorted(maps)}, not {map_name!r}; write {path}:NAME")
        return maps[map_name]
    return from_model, spec


def per_image_scores(dataset, sources):
    """For each source: the F curves (images x 256 thresholds) and MAEs (images) on the images
    that every source has a map for."""
    curves, errors = [[] for _ in sources], [[] for _ in sources]
    for index, stem in enumerate(dataset.stems):
        sample = dataset.load(index)
        if sample is None:
            continue
        maps = [source(stem, sample) for source in sources]
        if any(m is None for m in maps):
            continue
        for k, saliency in enumerate(maps):
            saliency = np.asarray(saliency, dtype=np.float64)
            curves[k].append(f_measure(*precision_recall_curve(saliency, sample.mask)))
            errors[k].append(mean_absolute_error(saliency, sample.mask))
    return [np.array(c) for c in curves], [np.array(e) for e in errors]


def max_f(curves):
    """PySODMetrics' max F: the F curves averaged over images, then the best threshold."""
    return curves.mean(axis=0).max()


def paired_bootstrap(curves, errors, resamples, seed):
    """{score: (A, B, difference, low, high)}: the scores on all images, and the 95 % interval
    of A - B over resamples of the images."""
    (curves_a, curves_b), (errors_a, errors_b) = curves, errors
    rng = np.random.default_rng(seed)
    differences = {"max F": [], "MAE": []}
    for _ in range(resamples):  # one resample at a time: all at once would hold resamples x images x 256 floats
        draw = rng.integers(0, len(errors_a), len(errors_a))
        differences["max F"].append(max_f(curves_a[draw]) - max_f(curves_b[draw]))
        differences["MAE"].append(errors_a[draw].mean() - errors_b[draw].mean())
    whole = {"max F": (max_f(curves_a), max_f(curves_b)), "MAE": (errors_a.mean(), errors_b.mean())}
    return {score: (*whole[score], whole[score][0] - whole[score][1], *np.percentile(differences[score], [2.5, 97.5]))
            for score in whole}


def verdict(score, low, high):
    better_when_higher = score != "MAE"
    if low > 0 or high < 0:
        return "A is ahead" if (low > 0) == better_when_higher else "B is ahead"
    return "no clear difference"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="images and masks, in any layout evaluate.py reads")
    p.add_argument("a", help="source A: CHECKPOINT[:MAP], a folder of maps, or centre-prior")
    p.add_argument("b", help="source B, likewise")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.resamples < 100:
        sys.exit(f"error: --resamples must be at least 100 for a 95 % interval, got {args.resamples}")
    try:
        dataset = SaliencyDataset(args.dataset)
        (source_a, name_a), (source_b, name_b) = map_source(args.a), map_source(args.b)
        curves, errors = per_image_scores(dataset, [source_a, source_b])
    except (DatasetError, CheckpointError) as exc:
        sys.exit(f"error: {exc}")
    if len(errors[0]) < 2:
        sys.exit(f"error: only {len(errors[0])} images have a map from both sources; a comparison needs at least 2")
    print(f"A: {name_a}\nB: {name_b}\n{len(errors[0])} images with a map from both; {args.resamples} resamples, seed {args.seed}")
    print(f"{'':6s} {'A':>7s} {'B':>7s} {'A - B':>7s}  95 % interval")
    for score, (a, b, difference, low, high) in paired_bootstrap(curves, errors, args.resamples, args.seed).items():
        print(f"{score:6s} {a:7.4f} {b:7.4f} {difference:+7.4f}  [{low:+.4f}, {high:+.4f}]  {verdict(score, low, high)}")


if __name__ == "__main__":
    main()
