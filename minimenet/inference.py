"""Inference and evaluation: saliency maps (Eq. 5 and the CE map) at each image's own size."""
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import backend
from .data import DatasetError, evaluation_batches, normalize, resize_for_evaluation, resize_saliency_map
from .metrics import SaliencyMetrics

MAP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def predict_batch(model, images):
    """Network-ready images (B, 3, S, S) -> {name: (B, S, S) NumPy map in [0, 1]}: the maps of
    ``MEnet.saliency_maps`` ("ce", and for menet "metric" and the other Eq. 5 reading)."""
    return {name: backend.to_numpy(m) for name, m in model.saliency_maps(backend.xp.asarray(images)).items()}


def predict_image(model, image):
    """One RGB uint8 image (H, W, 3) of any size -> maps (H, W) for each kind."""
    size = model.config.image_size
    maps = predict_batch(model, normalize(resize_for_evaluation(image, size))[None])
    return {name: resize_saliency_map(m[0], image.shape[:2]) for name, m in maps.items()}


def map_names(scores):
    """The saliency maps an ``evaluate`` result scores, CE map last."""
    return sorted((name for name in scores if name != "examples"), key=lambda name: (name == "ce", name))


def evaluate(model, dataset, batch_size=16, keep=0, progress=None, distortion=None):
    """Metrics of each map over ``dataset``, the maps resized back to each mask's original size.

    Returns {map name: results} (results as ``SaliencyMetrics.results()``, whose "count" is the
    number of images scored: undecodable pairs are left out) for every map of
    ``predict_batch``, plus
    "examples": the first ``keep`` (image, mask, maps) triples for pictures. ``progress``, if
    given, is called with (images done, images in the dataset) after every batch. ``distortion``
    (``minimenet.distort.Distortion``) corrupts each image before the network sees it.
    """
    size = model.config.image_size
    scores, examples = {}, []
    for batch in evaluation_batches(dataset, size, batch_size, distortion):
        maps = predict_batch(model, batch.images)
        for name, batch_maps in maps.items():
            metrics = scores.setdefault(name, SaliencyMetrics())
            for saliency, mask in zip(batch_maps, batch.masks):
                metrics.update(resize_saliency_map(saliency, mask.shape), mask)
        for i in range(min(keep - len(examples), len(batch.masks))):
            examples.append((batch.images[i], batch.masks[i], {name: m[i] for name, m in maps.items()}))
        if progress:
            progress(len(scores["ce"]), len(dataset))
    if not scores:
        raise DatasetError(f"evaluate: no image of {dataset.root} could be decoded; {dataset.summary()}")
    results = {name: metrics.results() for name, metrics in scores.items()}
    results["examples"] = examples
    return results


def score_map_folder(folder, dataset, progress=None):
    """Metrics of saliency maps that already exist (e.g. a published method's), as
    ``SaliencyMetrics.results()``: FOLDER/STEM.png (or .jpg, .bmp, .tif) against the mask of each
    of ``dataset``'s stems, a map of another size resized (bilinear) to its mask's. Returns
    (results, missing stems); raises DatasetError when no map matches any stem."""
    folder = Path(folder)
    files = {path.stem: path for path in sorted(folder.iterdir()) if path.suffix.lower() in MAP_EXTENSIONS}
    metrics, missing = SaliencyMetrics(), []
    for index, stem in enumerate(dataset.stems):
        if stem not in files:
            missing.append(stem)
            continue
        sample = dataset.load(index)
        if sample is None:
            continue
        try:
            with Image.open(files[stem]) as handle:
                saliency = np.asarray(handle.convert("L"), dtype=np.float32) / 255
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"score_map_folder: the map {files[stem]} cannot be read ({exc}); replace or remove it") from None
        metrics.update(resize_saliency_map(saliency, sample.mask.shape), sample.mask)
        if progress:
            progress(index + 1, len(dataset))
    if not len(metrics):
        raise DatasetError(f"score_map_folder: no map in {folder} is named after an image of {dataset.root} "
                           f"(maps are matched by file stem, e.g. {dataset.stems[0]}.png)")
    return metrics.results(), missing


def output_names(paths, keep_suffix=False):
    """A distinct output name for each input path, in order: its stem (its name, with
    ``keep_suffix``), or where two inputs share one, enough of the parent folders to tell them
    apart joined with "_" (d1/x.jpg, d2/x.jpg -> d1_x, d2_x), then the suffix (photo.jpg,
    photo.png -> photo_jpg, photo_png), then a counter. The same file given twice gets the same
    name. A folder's name is its resolved one, so "." is named after the current folder."""
    resolved = [Path(p).expanduser().resolve() for p in paths]

    def name(path, depth, suffix):
        base = path.name if keep_suffix or not path.suffix else path.stem
        if suffix and path.suffix and not keep_suffix:
            base += "_" + path.suffix.lstrip(".")
        parents = [part.name for part in list(path.parents)[:depth] if part.name][::-1]
        return "_".join(parents + [base]) or "root"

    def clashing(names):
        owners = {}
        for path, n in zip(resolved, names):
            owners.setdefault(n, set()).add(path)
        return {n for n, paths in owners.items() if len(paths) > 1}

    names = [name(p, 0, False) for p in resolved]
    for depth, suffix in [(d, False) for d in range(1, 4)] + [(d, True) for d in range(0, 4)]:
        clashes = clashing(names)
        if not clashes:
            return names
        names = [name(p, depth, suffix) if n in clashes else n for p, n in zip(resolved, names)]
    numbers, final = {}, []
    clashes = clashing(names)
    for path, n in zip(resolved, names):  # a last resort: a counter per distinct path
        if n in clashes:
            n = f"{n}-{numbers.setdefault((n, path), len([k for k in numbers if k[0] == n]) + 1)}"
        final.append(n)
    return final
