"""Inference and evaluation: saliency maps (Eq. 5 and the CE map) at each image's own size."""
from . import backend
from .data import evaluation_batches, normalize, resize_for_evaluation, resize_saliency_map
from .metrics import SaliencyMetrics

def predict_batch(model, images):
    """Normalised images (B, 3, S, S) -> {"metric": (B, S, S), "ce": (B, S, S)} NumPy maps in [0, 1].

    "metric" is missing for the ablation variants, which have no metric map.
    """
    metric_map, ce_map = model.saliency_maps(backend.xp.asarray(images))
    maps = {"ce": backend.to_numpy(ce_map)}
    if metric_map is not None:
        maps["metric"] = backend.to_numpy(metric_map)
    return maps


def predict_image(model, image):
    """One RGB uint8 image (H, W, 3) of any size -> maps (H, W) for each kind."""
    size = model.config.image_size
    maps = predict_batch(model, normalize(resize_for_evaluation(image, size))[None])
    return {name: resize_saliency_map(m[0], image.shape[:2]) for name, m in maps.items()}


def evaluate(model, dataset, batch_size=16, keep=0, progress=None):
    """Metrics of each map over ``dataset``, the maps resized back to each mask's original size.

    Returns {"metric": results, "ce": results} (results as ``SaliencyMetrics.results()``), plus
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
