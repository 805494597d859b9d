"""Inference and evaluation: saliency maps (Eq. 5 and the CE map) at each image's own size."""
from . import backend
from .data import evaluation_batches, normalize, resize_for_evaluation, resize_saliency_map
from .metrics import SaliencyMetrics

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


def evaluate(model, dataset, batch_size=16, keep=0, progress=None):
    """Metrics of each map over ``dataset``, the maps resized back to each mask's original size.

    Returns {map name: results} (results as ``SaliencyMetrics.results()``) for every map of
    ``predict_batch``, plus
    "examples": the first ``keep`` (image, mask, maps) triples for pictures. ``progress``, if
    given, is called with (images done, images in the dataset) after every batch.
    """
    size = model.config.image_size
    scores, examples = {}, []
    for batch in evaluation_batches(dataset, size, batch_size):
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
        raise ValueError(f"evaluate: no image of {dataset.root} could be decoded; {dataset.summary()}")
    results = {name: metrics.results() for name, metrics in scores.items()}
    results["examples"] = examples
    return results
