"""Hard mining for the metric loss (Eq. 3), shared by its NumPy form (``losses``) and the host
step of its CUDA kernels (``cuda.metric``), so that both select the very same pixels.

The paper balances the two classes 1:1 by the largest loss, after SSD's hard negative mining
(Section III-B): the minority class whole, and that many of the majority class's hardest pixels.
"""
import numpy

from .backend import array_module

METRIC_GRADIENTS = ("authors", "exact")  # the metric loss's two gradients (see losses.metric_loss)


def hard_negative_mask(pixel_loss, labels):
    """Per image: every pixel of the minority class plus as many of the majority class's pixels
    with the largest ``pixel_loss`` (1:1, the paper's Section III-B after SSD). With equal
    counts every pixel is selected; an image of a single class selects nothing, having no
    minority to balance. Ties are broken by pixel order (stable sort).

    pixel_loss, labels: (B, P) arrays. Returns a boolean (B, P) mask.
    """
    xp = array_module(pixel_loss)
    salient = labels == 1
    n_salient = salient.sum(axis=1)
    n_background = labels.shape[1] - n_salient
    minority_is_salient = n_salient <= n_background
    minority = xp.where(minority_is_salient[:, None], salient, ~salient)
    quota = xp.minimum(n_salient, n_background)
    # Rank the majority pixels by loss; minority pixels sort last.
    ranked = xp.where(minority, -xp.inf, pixel_loss)
    # CuPy's argsort is always stable and accepts no ``kind``; NumPy's must be asked.
    order = xp.argsort(-ranked, axis=1, **({"kind": "stable"} if xp is numpy else {}))
    hardest = xp.zeros_like(minority)
    rows = xp.arange(labels.shape[0])[:, None]
    hardest[rows, order] = xp.arange(labels.shape[1])[None, :] < quota[:, None]
    return minority | hardest


def check_label_shape(op, x, labels):
    """Labels (B, H, W) for an input (B, C, H, W); anything else is a ValueError naming ``op``."""
    expected = (x.shape[0],) + x.shape[2:]
    if tuple(labels.shape) != expected:
        raise ValueError(f"{op}: labels must have shape {expected} (batch, height, width) to match input {x.shape}, "
                         f"got {tuple(labels.shape)}")


def check_labels(op, x, labels):
    """``check_label_shape``, and every label 0 (background) or 1 (salient), as both losses take
    them. (The metric kernels' launcher checks the shape only: the loss before it has checked the
    values, and a second pass over the labels would cost a device sync every step.)"""
    check_label_shape(op, x, labels)
    if bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError(f"{op}: labels must be 0 (background) or 1 (salient), got values "
                         f"{sorted(set(array_module(labels).unique(labels).tolist()))[:5]}; binarise masks first")
