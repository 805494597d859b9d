"""MEnet's two losses: pixel-wise cross entropy (Eq. 1) and the centroid metric loss (Eq. 3).

Normalisation follows the authors' Caffe loss layer, not the 1 / (N |Omega|) of the paper's
equations: each image's sum is divided by that image's element count and the images are summed,
so a gradient per pixel does not shrink as the batch grows. (Eq. 1 as printed is our CE divided
by N / 2; Eq. 3 as printed, over all pixels, is our metric value without mining divided by N.) The learning rate 0.1 of the
authors' solver is calibrated to this.
"""

from . import backend, cuda
from .backend import array_module
from .mining import METRIC_GRADIENTS, check_labels, hard_negative_mask
from .norm import l2_normalize
from .tensor import Tensor


def softmax_cross_entropy(logits, labels):
    """Eq. 1 over all pixels (no mining), P the softmax of the two logits per pixel:

        L_CE = sum_n sum_i -ln P(l_i = y_i) / (2 |Omega|)

    (the authors' normalisation: Caffe divides each image by its logits' element count, 2 |Omega|).
    logits (B, 2, H, W); labels (B, H, W) with 1 = salient, 0 = background.
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"softmax_cross_entropy: logits must have shape (batch, 2, height, width), got {logits.shape}")
    xp = logits.xp
    labels = xp.asarray(labels)
    check_labels("softmax_cross_entropy", logits, labels)
    z = logits.data - logits.data.max(axis=1, keepdims=True)
    log_p = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
    one_hot = xp.stack([1 - labels, labels], axis=1).astype(log_p.dtype)
    count = 2 * labels.shape[1] * labels.shape[2]
    loss = -(log_p * one_hot).sum() / count

    def backward(g):
        # d(-ln softmax_y)/dz = softmax - onehot(y)
        return ((xp.exp(log_p) - one_hot) * (g / count),)
    return Tensor.from_op(loss, (logits,), backward, "softmax_cross_entropy")


def metric_loss_arrays(y, labels, gradient="authors"):
    """Eq. 3 with hard mining on its per-pixel terms, on unit features y (B, C, H, W).
    Returns (loss, grad) where grad is the chosen gradient (see ``metric_loss``) with y's shape.

    Per image, with region centroids c_s, c_b of y (a region of 0 pixels counts as 1, so its
    centroid is 0) and m_i the mining mask of ``hard_negative_mask`` on the terms,
        term_i = ||y_i - c_own(i)||^2 - ||y_i - c_other(i)||^2,
        loss   = sum_n sum_i m_i term_i / |Omega|.
    "authors": dL/dy_i = m_i (c_other(i) - c_own(i)) / (C |Omega|), centroids held constant.
    "exact":   the derivative of ``loss`` with the mask held fixed (it is piecewise constant):
        dL/dy_j = [2 m_j (c_other - c_own) + (2 / n_own) (sum_{i in other region} m_i (y_i - c_own)
                                                          - sum_{i in own region} m_i (y_i - c_own))] / |Omega|,
    the second part being how moving y_j moves its own region's centroid.
    """
    if gradient not in METRIC_GRADIENTS:
        raise ValueError(f"metric_loss: gradient must be one of {METRIC_GRADIENTS}, got {gradient!r}")
    xp = array_module(y)
    b, c = y.shape[:2]
    feats = y.reshape(b, c, -1)
    pixels = feats.shape[2]
    flat_labels = labels.reshape(b, pixels)
    s = (flat_labels == 1).astype(y.dtype)                               # (B, P)
    n_s = s.sum(axis=1, keepdims=True)                                  # (B, 1)
    n_b = pixels - n_s
    sum_s = _per_image_products(feats, s)                               # sum_{i in S} y_i, (B, C)
    c_s = sum_s / xp.maximum(n_s, 1)
    c_b = (xp.einsum("bcp->bc", feats) - sum_s) / xp.maximum(n_b, 1)
    # ||y - a||^2 - ||y - b||^2 = |a|^2 - |b|^2 - 2 <y, a - b>: one product over the features, not
    # two (B, C, P) differences. sign = +1 on S (own c_s, other c_b), -1 on the background.
    apart = c_s - c_b                                                   # (B, C)
    sign = 2 * s - 1
    terms = sign * (((c_s * c_s).sum(axis=1) - (c_b * c_b).sum(axis=1))[:, None]
                    - 2 * xp.matmul(apart[:, None, :], feats)[:, 0])    # (B, P)
    m = hard_negative_mask(terms, flat_labels).astype(y.dtype)          # (B, P)
    loss = (terms * m).sum() / pixels
    # other - own = -sign (c_s - c_b)
    if gradient == "authors":
        grad = apart[:, :, None] * (-sign * m / (c * pixels))[:, None, :]
        return loss, grad.reshape(y.shape)
    mined_s, mined_b = _per_image_products(feats, m * s), _per_image_products(feats, m * (1 - s))  # sum_{i in S} m_i y_i, ...
    count_s, count_b = (m * s).sum(axis=1, keepdims=True), (m * (1 - s)).sum(axis=1, keepdims=True)
    via_c_s = 2 * ((mined_b - count_b * c_s) - (mined_s - count_s * c_s)) / xp.maximum(n_s, 1)
    via_c_b = 2 * ((mined_s - count_s * c_b) - (mined_b - count_b * c_b)) / xp.maximum(n_b, 1)
    grad = (apart[:, :, None] * (-2 * sign * m)[:, None, :] + via_c_b[:, :, None]
            + (via_c_s - via_c_b)[:, :, None] * s[:, None, :])
    return loss, (grad / pixels).reshape(y.shape)


def _per_image_products(feats, weights):
    """sum_i weights[n, i] feats[n, :, i] for each image n: (B, C, P) and (B, P) to (B, C)."""
    return array_module(feats).matmul(feats, weights[:, :, None])[:, :, 0]


def metric_loss(features, labels, gradient="authors", eps=0.0):
    """The centroid metric loss L*_ML of Eq. 3 on the L2-normalised features, with hard mining.

    features: the feature head's output f (B, C, H, W) before normalisation; labels (B, H, W).
    The value is ``metric_loss_arrays``'s on y = f / ||f||. The gradient:

    - "authors" (default): the authors' layer holds the centroids constant and passes the
      normalisation straight through, so dL/df_i = m_i (c_other - c_own) / (C |Omega|). That is
      not the gradient of Eq. 3 but the exact gradient of the surrogate
          sum_n sum_i m_i <f_i, stopgrad(c_other(i) - c_own(i))> / (C |Omega|)
      on the unnormalised f; its size is bounded by the centroid distance (at most 2) whatever
      the features do.
    - "exact": the true derivative of the value through the centroids and the normalisation.

    Why the unit sphere: summed over one image without mining, the intra-class terms cancel,
        sum_i (||y_i - c_own||^2 - ||y_i - c_other||^2) = -|Omega| ||c_s - c_b||^2,
    so on unbounded features the loss only pushes the centroids apart and has no lower bound.
    With unit features the centroids are at most 2 apart, and the minimum, -4 per image, needs
    every salient feature at one point of the sphere and every background feature at its
    antipode: the compactness the intra-class term asks for.

    On the GPU in float32 the terms and the gradient come from ``kernels/metric_loss.cu``.
    """
    if features.ndim != 4:
        raise ValueError(f"metric_loss: features must have shape (batch, channels, height, width), got {features.shape}")
    if gradient not in METRIC_GRADIENTS:
        raise ValueError(f"metric_loss: gradient must be one of {METRIC_GRADIENTS}, got {gradient!r}")
    xp = features.xp
    labels = xp.asarray(labels)
    check_labels("metric_loss", features, labels)
    unit = l2_normalize(features, eps)  # eps 0 by default: the authors' layer has none
    y = unit.data
    if backend.runs_on_cuda_kernels(y):
        loss, grad = cuda.metric_loss(y, labels.astype(xp.int32), gradient)
    else:
        loss, grad = metric_loss_arrays(y, labels, gradient)
    # "exact" goes on through the normalisation's Jacobian; "authors" skips it (straight through).
    parent = unit if gradient == "exact" else features

    def backward(g):
        return (grad * g,)
    return Tensor.from_op(loss, (parent,), backward, "metric_loss")

