"""MEnet's two losses: pixel-wise cross entropy (Eq. 1) and the centroid metric loss (Eq. 3)."""
import numpy

from .backend import array_module, is_gpu_array
from .tensor import Tensor


def _check_labels(op, x, labels):
    expected = (x.shape[0],) + x.shape[2:]
    if tuple(labels.shape) != expected:
        raise ValueError(f"{op}: labels must have shape {expected} (batch, height, width) to match input {x.shape}, "
                         f"got {tuple(labels.shape)}")
    if bool(((labels != 0) & (labels != 1)).any()):
        raise ValueError(f"{op}: labels must be 0 (background) or 1 (salient), got values "
                         f"{sorted(set(array_module(labels).unique(labels).tolist()))[:5]}; binarise masks first")


def hard_negative_mask(pixel_loss, labels):
    """Per image: every pixel of the minority class plus as many of the highest-loss pixels of
    the majority class (1:1, as the paper does after SSD). An image of a single class selects
    nothing, having no minority to balance. Ties are broken by pixel order (stable sort).

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


def softmax_cross_entropy(logits, labels, hard_negative_mining=True):
    """Eq. 1: mean over pixels of -ln P(l_i = y_i), P the softmax of the two logits per pixel.

    logits (B, 2, H, W); labels (B, H, W) with 1 = salient, 0 = background. With mining, the mean
    runs over the selected pixels of the whole batch (see ``hard_negative_mask``); without, over
    all N x |Omega| pixels, as Eq. 1 is written.
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"softmax_cross_entropy: logits must have shape (batch, 2, height, width), got {logits.shape}")
    xp = logits.xp
    labels = xp.asarray(labels)
    _check_labels("softmax_cross_entropy", logits, labels)
    z = logits.data - logits.data.max(axis=1, keepdims=True)
    log_p = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
    one_hot = xp.stack([1 - labels, labels], axis=1).astype(log_p.dtype)
    pixel_loss = -(log_p * one_hot).sum(axis=1)
    b = labels.shape[0]
    if hard_negative_mining:
        selected = hard_negative_mask(pixel_loss.reshape(b, -1), labels.reshape(b, -1)).reshape(labels.shape)
    else:
        selected = xp.ones(labels.shape, dtype=bool)
    count = max(int(selected.sum()), 1)
    loss = (pixel_loss * selected).sum() / count

    def backward(g):
        # d(-ln softmax_y)/dz = softmax - onehot(y)
        return ((xp.exp(log_p) - one_hot) * (selected[:, None] * (g / count)),)
    return Tensor.from_op(loss, (logits,), backward, "softmax_cross_entropy")


def metric_loss_arrays(f, labels):
    """Eq. 3 on arrays, literally per pixel, with its exact gradient. Returns (loss, d loss / d f).

    For image n with salient centroid c_s, background centroid c_b and counts n_s, n_b:
        term_i = ||f_i - c_own(i)||^2 - ||f_i - c_other(i)||^2,   loss = sum_n sum_i term_i / (N |Omega|).
    Differentiating through the centroids too, d loss / d f_j = 2 (c_other - c_own) / (N n_own(j)).
    An image that lacks one region has no centroid to push away from: it contributes zero.
    """
    xp = array_module(f)
    b, c = f.shape[:2]
    feats = f.reshape(b, c, -1)
    salient = (labels.reshape(b, 1, -1) == 1).astype(f.dtype)
    n_s = salient.sum(axis=2)                      # (B, 1)
    n_b = feats.shape[2] - n_s
    both = (n_s > 0) & (n_b > 0)
    c_s = (feats * salient).sum(axis=2) / xp.maximum(n_s, 1)            # (B, C)
    c_b = (feats * (1 - salient)).sum(axis=2) / xp.maximum(n_b, 1)
    own = xp.where(salient > 0, c_s[:, :, None], c_b[:, :, None])      # (B, C, P)
    other = xp.where(salient > 0, c_b[:, :, None], c_s[:, :, None])
    terms = ((feats - own) ** 2).sum(axis=1) - ((feats - other) ** 2).sum(axis=1)
    denominator = feats.shape[0] * feats.shape[2]
    loss = (terms * both).sum() / denominator
    n_own = xp.where(salient[:, 0] > 0, n_s, n_b)                      # (B, P)
    grad = 2 * (other - own) / (b * xp.maximum(n_own, 1))[:, None, :] * both[:, :, None]
    return loss, grad.reshape(f.shape)


def metric_loss(f, labels):
    """The centroid metric loss L*_ML of Eq. 3 on features f (B, C, H, W), labels (B, H, W).

    A finding that shapes how MEnet uses it: the intra-class terms cancel. Summed over one image,
        sum_i (||f_i - c_own||^2 - ||f_i - c_other||^2) = -|Omega| * ||c_salient - c_background||^2
    (expand both squares; sum_i over a region of (f_i - c_region) is zero). So on unbounded
    features the loss only pushes the two centroids apart and has no lower bound: features can
    grow forever. MEnet therefore applies it to L2-normalised features (``norm.l2_normalize``).
    In the unit ball the centroids are at most 2 apart, so the loss is bounded below by -4, and
    reaching -4 needs every salient feature at one point of the sphere and every background
    feature at its antipode: maximising the centroid distance forces each region to gather at a
    single point, the compactness the paper wants from the intra-class term.

    The loss is still computed literally, per pixel, as Eq. 3 is written, so that our CUDA
    kernel (kernels/metric_loss.cu), which the GPU uses for float32, mirrors it term by term.
    """
    if f.ndim != 4:
        raise ValueError(f"metric_loss: features must have shape (batch, channels, height, width), got {f.shape}")
    xp = f.xp
    labels = xp.asarray(labels)
    _check_labels("metric_loss", f, labels)
    if is_gpu_array(f.data) and f.dtype == "float32":
        from . import cuda
        loss, grad = cuda.metric_loss(f.data, labels.astype(xp.int32))
    else:
        loss, grad = metric_loss_arrays(f.data, labels)

    def backward(g):
        return (grad * g,)
    return Tensor.from_op(loss, (f,), backward, "metric_loss")
