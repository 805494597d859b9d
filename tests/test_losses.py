"""MEnet's losses: pixel-wise softmax cross entropy (Eq. 1) and the centroid metric loss (Eq. 3)
with hard mining on its terms, under both of its gradients (the authors' and the exact one).

Gradient checks: ``minimenet.gradcheck`` in float64 with central differences (eps 1e-5), passing
when every checked element has |analytic - numeric| <= rtol * max(|analytic|, |numeric|, floor)
with rtol = 1e-6 and the absolute floor 1e-3. They run on NumPy; the float32 value and gradient
checks run on every available backend (on the GPU the metric loss is our CUDA kernel).
"""
import re

import numpy as np
import pytest

from minimenet import Tensor, gradcheck, metric_loss, softmax_cross_entropy
from minimenet.backend import to_numpy
from minimenet.losses import hard_negative_mask

RTOL, FLOOR = 1e-6, 1e-3


def check(fn, inputs, max_elements=None):
    return gradcheck(fn, inputs, rtol=RTOL, floor=FLOOR, max_elements=max_elements)


def mixed_labels(rng, shape):
    """Random 0/1 labels with at least one pixel of each class in every image."""
    labels = (rng.random(shape) < 0.35).astype(np.int64)
    labels[:, 0, 0], labels[:, -1, -1] = 1, 0
    return labels


def reference_pixel_loss(logits, labels):
    """-ln softmax(logits)[label] per pixel, computed one pixel at a time."""
    b, _, h, w = logits.shape
    out = np.zeros((b, h, w))
    for n in range(b):
        for r in range(h):
            for c in range(w):
                z = logits[n, :, r, c]
                out[n, r, c] = np.log(np.exp(z).sum()) - z[labels[n, r, c]]
    return out


# ----------------------------------------------------------------------------------------------
# hard_negative_mask: the selection itself.

def mask(xp, losses, labels):
    return to_numpy(hard_negative_mask(xp.asarray(losses, dtype=xp.float64), xp.asarray(labels)))


@pytest.mark.parametrize("labels, losses, expected", [
    # 2 salient (minority), 6 background; background losses 0.9 (pixel 1), 0.8 (pixel 6) are the two hardest.
    pytest.param([[1, 0, 0, 0, 1, 0, 0, 0]], [[0.1, 0.9, 0.2, 0.7, 0.05, 0.3, 0.8, 0.1]], [[1, 1, 0, 0, 1, 0, 1, 0]],
                 id="all_minority_pixels_and_as_many_hardest_majority_pixels"),
    # 5 salient, 2 background (minority): both background + salient 4 (3.0), 1 (2.0).
    pytest.param([[1, 1, 0, 1, 1, 1, 0]], [[0.5, 2.0, 0.0, 0.1, 3.0, 0.4, 0.0]], [[0, 1, 1, 0, 1, 0, 1]],
                 id="when_salient_is_the_majority"),
    # Images of one class (rows 0 and 1) select nothing.
    pytest.param([[1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], [[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.5, 0.1, 0.2, 0.6]],
                 [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]], id="single_class_image_selects_nothing"),
])
def test_mining_selects(xp, labels, losses, expected):
    np.testing.assert_array_equal(mask(xp, np.array(losses), np.array(labels)), np.array(expected, dtype=bool))


def test_mining_balanced_image_selects_every_pixel(xp):
    labels = np.array([[1, 0, 0, 1, 0, 1]])
    np.testing.assert_array_equal(mask(xp, np.array([[0.3, 0.2, 0.1, 0.0, 0.5, 0.4]]), labels), np.ones((1, 6), bool))


def test_mining_ties_are_broken_by_pixel_order(xp):
    labels = np.array([[0, 0, 1, 0, 0, 1, 0]])               # 2 salient, 5 background all equally hard
    losses = np.array([[0.7, 0.7, 0.1, 0.7, 0.7, 0.1, 0.7]])
    expected = np.array([[1, 1, 1, 0, 0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(mask(xp, losses, labels), expected)
    # A tie straddling the cut: the hardest (pixel 6, 0.9) first, then the earliest of the 0.5s.
    losses = np.array([[0.5, 0.2, 0.1, 0.5, 0.5, 0.1, 0.9]])
    expected = np.array([[1, 0, 1, 0, 0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(mask(xp, losses, labels), expected)


def test_mining_ties_in_a_long_row_pick_the_earliest_pixels(xp):
    # Long enough that an unstable sort (e.g. NumPy's introsort, stable only below 16 elements) reorders ties.
    labels = np.zeros((1, 64), dtype=np.int64)
    labels[0, [3, 20, 41, 50, 63]] = 1                        # 5 salient, 59 equally hard background pixels
    losses = np.full((1, 64), 0.25)
    expected = labels.astype(bool)
    expected[0, [0, 1, 2, 4, 5]] = True                       # the first five background pixels
    np.testing.assert_array_equal(mask(xp, losses, labels), expected)


def test_mining_minority_pixels_are_kept_even_when_their_loss_is_lowest(xp):
    labels = np.array([[1, 0, 0, 0]])
    losses = np.array([[0.0, 5.0, 6.0, 7.0]])
    np.testing.assert_array_equal(mask(xp, losses, labels), [[1, 0, 0, 1]])


def test_mining_properties_on_random_batches(xp, rng):
    labels = (rng.random((6, 50)) < rng.random((6, 1))).astype(np.int64)
    labels[4], labels[5] = 1, 0  # single-class images
    losses = rng.random((6, 50))
    selected = mask(xp, losses, labels)
    for n in range(6):
        salient = labels[n] == 1
        n_s, n_b = salient.sum(), (~salient).sum()
        minority = salient if n_s <= n_b else ~salient
        quota = min(n_s, n_b)
        assert selected[n].sum() == 2 * quota
        if quota == 0:
            continue
        assert selected[n][minority].all()
        majority_losses = losses[n][~minority]
        picked = selected[n][~minority]
        assert picked.sum() == quota
        assert majority_losses[picked].min() >= majority_losses[~picked].max(initial=-np.inf)


# ----------------------------------------------------------------------------------------------
# softmax_cross_entropy (Eq. 1), all pixels, each image's sum over 2 |Omega| (the authors' Caffe).

def test_cross_entropy_hand_derived_values():
    # Equal logits: every pixel costs ln 2; one image of 4 pixels: 4 ln 2 / (2 * 4).
    loss = softmax_cross_entropy(Tensor(np.zeros((1, 2, 2, 2))), np.array([[[1, 0], [0, 0]]]))
    assert loss.item() == pytest.approx(np.log(2.0) / 2, rel=1e-12)
    # Images are summed, not averaged.
    loss = softmax_cross_entropy(Tensor(np.zeros((3, 2, 2, 2))), np.zeros((3, 2, 2), int))
    assert loss.item() == pytest.approx(3 * np.log(2.0) / 2, rel=1e-12)
    # One pixel, logits (0, ln 3): P(salient) = 3/4.
    logits = Tensor(np.array([0.0, np.log(3.0)]).reshape(1, 2, 1, 1))
    assert softmax_cross_entropy(logits, np.ones((1, 1, 1), int)).item() == pytest.approx(-np.log(0.75) / 2, rel=1e-12)
    assert softmax_cross_entropy(logits, np.zeros((1, 1, 1), int)).item() == pytest.approx(-np.log(0.25) / 2, rel=1e-12)


def test_cross_entropy_value_over_all_pixels(xp, rng):
    logits = rng.standard_normal((3, 2, 3, 4)) * 2
    labels = mixed_labels(rng, (3, 3, 4))
    labels[2] = 0  # a single-class image counts like any other: no mining in the CE
    expected = reference_pixel_loss(logits, labels).sum() / (2 * 12)
    for dtype, rtol in [(np.float64, 1e-12), (np.float32, 1e-5)]:
        loss = softmax_cross_entropy(Tensor(xp.asarray(logits, dtype=dtype)), xp.asarray(labels))
        assert loss.dtype == dtype
        assert loss.item() == pytest.approx(expected, rel=rtol)


def test_cross_entropy_gradcheck(rng):
    logits = Tensor(rng.standard_normal((3, 2, 3, 4)) * 2, requires_grad=True)
    labels = mixed_labels(rng, (3, 3, 4))
    labels[1], labels[2] = 1, 0
    check(lambda z: softmax_cross_entropy(z, labels), [logits])


def test_cross_entropy_gradient_is_the_authors(rng):
    """(p - y) / (2 |Omega|) per pixel, as Caffe's layer divides by the logits' per-image count."""
    logits = Tensor(rng.standard_normal((2, 2, 3, 4)), requires_grad=True)
    labels = mixed_labels(rng, (2, 3, 4))
    softmax_cross_entropy(logits, labels).backward()
    p = np.exp(logits.data) / np.exp(logits.data).sum(axis=1, keepdims=True)
    one_hot = np.stack([1 - labels, labels], axis=1)
    np.testing.assert_allclose(logits.grad, (p - one_hot) / 24, rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = Tensor(np.array([1000.0, -1000.0, -1000.0, 1000.0]).reshape(1, 2, 1, 2), requires_grad=True)
    loss = softmax_cross_entropy(logits, np.array([[[0, 0]]]))  # pixel 0 right, pixel 1 wrong by 2000
    loss.backward()
    assert loss.item() == pytest.approx(2000.0 / 4)
    assert np.all(np.isfinite(logits.grad))


# ----------------------------------------------------------------------------------------------
# metric_loss (Eq. 3) with mining on its terms, and its two gradients, against literal loops.

def unit(f):
    return f / np.sqrt((f ** 2).sum(axis=1, keepdims=True))


def literal_metric(f, labels):
    """Per pixel, with loops: (value, authors' gradient, mining mask) of the mined Eq. 3 on y = f / ||f||.

    Mining: the smaller region whole, plus as many pixels of the larger one, largest term
    first, earlier pixel first among equals; a single-region image selects nothing.
    """
    y = unit(f)
    b, c = f.shape[:2]
    feats, flat = y.reshape(b, c, -1), labels.reshape(b, -1)
    pixels = flat.shape[1]
    value, grad, mined = 0.0, np.zeros_like(feats), np.zeros(flat.shape, bool)
    for n in range(b):
        regions = {k: [i for i in range(pixels) if flat[n, i] == k] for k in (0, 1)}
        centre = {k: (sum(feats[n, :, i] for i in regions[k]) / max(len(regions[k]), 1)) for k in (0, 1)}
        term = [((feats[n, :, i] - centre[flat[n, i]]) ** 2).sum() - ((feats[n, :, i] - centre[1 - flat[n, i]]) ** 2).sum()
                for i in range(pixels)]
        small, large = sorted((0, 1), key=lambda k: (len(regions[k]), -k))   # a tie: salient is "smaller"
        quota = len(regions[small])
        chosen = regions[small] + sorted(regions[large], key=lambda i: (-term[i], i))[:quota] if quota else []
        for i in chosen:
            mined[n, i] = True
            value += term[i] / pixels
            grad[n, :, i] = (centre[1 - flat[n, i]] - centre[flat[n, i]]) / (c * pixels)
    return value, grad.reshape(f.shape), mined.reshape(labels.shape)


def test_metric_loss_hand_derived_two_pixels():
    # One channel, salient +1, background -1: centroids +1, -1; each term 0 - 4; both mined.
    f = Tensor(np.array([1.0, -1.0]).reshape(1, 1, 1, 2), requires_grad=True)
    loss = metric_loss(f, np.array([[[1, 0]]]))
    assert loss.item() == pytest.approx(-8.0 / 2, rel=1e-12)
    loss.backward()
    # Authors' gradient (c_other - c_own) / (C |Omega|): (-1 - 1) / 2 and (1 + 1) / 2.
    np.testing.assert_allclose(f.grad.ravel(), [-1.0, 1.0], rtol=1e-12)


@pytest.mark.parametrize("shape", [(3, 4, 3, 3), (2, 3, 5, 4), (4, 16, 4, 4)])
def test_metric_loss_value_and_authors_gradient_equal_the_literal_loops(shape, rng):
    f = rng.standard_normal(shape)
    labels = mixed_labels(rng, (shape[0],) + shape[2:])
    labels[-1] = 1
    features = Tensor(f, requires_grad=True)
    loss = metric_loss(features, labels)
    loss.backward()
    value, grad, _ = literal_metric(f, labels)
    assert loss.item() == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(features.grad, grad, rtol=1e-12, atol=1e-15)


def test_metric_loss_ties_and_balanced_images(rng):
    # Image 0: every background pixel has the same feature, so every majority term ties.
    # Image 1: balanced, everything selected.
    f = rng.standard_normal((2, 3, 2, 4))
    labels = np.array([[[1, 0, 0, 0], [0, 0, 1, 0]], [[1, 0, 1, 0], [0, 1, 0, 1]]])
    f[0][:, labels[0] == 0] = np.array([0.3, -0.2, 0.9])[:, None]
    features = Tensor(f, requires_grad=True)
    metric_loss(features, labels).backward()
    _, grad, mined = literal_metric(f, labels)
    np.testing.assert_array_equal(mined[0], [[1, 1, 1, 0], [0, 0, 1, 0]])   # the first two background pixels
    assert mined[1].all()
    np.testing.assert_allclose(features.grad, grad, rtol=1e-12, atol=1e-15)


def test_metric_mining_leaves_unselected_pixels_without_gradient(rng):
    f = rng.standard_normal((2, 4, 3, 4))
    labels = mixed_labels(rng, (2, 3, 4))
    for gradient in ("authors", "exact"):
        features = Tensor(f, requires_grad=True)
        metric_loss(features, labels, gradient).backward()
        _, _, mined = literal_metric(f, labels)
        magnitude = np.abs(features.grad).sum(axis=1)
        if gradient == "authors":
            assert np.all(magnitude[~mined] == 0) and np.all(magnitude[mined] > 0)
        assert not mined.all()


def authors_surrogate(frozen, labels):
    """sum_n sum_i m_i <f_i, stopgrad(c_other - c_own)> / (C |Omega|) with the mask and the
    centroids frozen at ``frozen`` (the literal loops), and ``metric_loss``'s authors' gradient
    as its backward: gradcheck then compares that gradient with the surrogate's differences."""
    _, constant, _ = literal_metric(frozen, labels)

    def fn(f):
        under_test = metric_loss(f, labels, "authors")
        return Tensor.from_op(np.asarray((f.data * constant).sum()), (f,), under_test._backward, "surrogate")
    return fn


def test_authors_gradient_is_the_gradient_of_its_surrogate(rng):
    f = rng.standard_normal((3, 4, 3, 3))
    labels = mixed_labels(rng, (3, 3, 3))
    labels[2] = 0
    check(authors_surrogate(f, labels), [Tensor(f.copy(), requires_grad=True)])


def test_authors_gradient_is_not_the_gradient_of_eq3(rng):
    f = Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    labels = mixed_labels(rng, (2, 3, 3))
    report = gradcheck(lambda f: metric_loss(f, labels, "authors"), [f], raise_on_failure=False)
    assert not report.ok


def test_exact_gradient_gradcheck(rng):
    x = Tensor(rng.standard_normal((3, 3, 3, 4)), requires_grad=True)
    labels = mixed_labels(rng, (3, 3, 4))
    labels[1], labels[2] = 1, 0
    check(lambda x: metric_loss(x, labels, "exact"), [x])


@pytest.mark.parametrize("gradient", ["authors", "exact"])
def test_single_region_images_contribute_zero_and_no_nan(gradient, rng):
    f = rng.standard_normal((3, 2, 2, 3))
    labels = mixed_labels(rng, (3, 2, 3))
    labels[1], labels[2] = 1, 0
    features = Tensor(f, requires_grad=True)
    loss = metric_loss(features, labels, gradient)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(features.grad))
    np.testing.assert_array_equal(features.grad[1:], 0.0)
    # Images are summed: the mixed image alone gives the same value.
    assert loss.item() == pytest.approx(metric_loss(Tensor(f[:1]), labels[:1]).item(), rel=1e-12)
    assert metric_loss(Tensor(f[1:]), labels[1:]).item() == 0.0


@pytest.mark.parametrize("gradient", ["authors", "exact"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_metric_loss_value_and_gradient_on_every_backend(gradient, dtype, xp, rng):
    f = rng.standard_normal((3, 4, 5, 3))
    labels = mixed_labels(rng, (3, 5, 3))
    labels[2] = 0
    reference = Tensor(f, requires_grad=True)
    metric_loss(reference, labels, gradient).backward()
    features = Tensor(xp.asarray(f, dtype=dtype), requires_grad=True)
    loss = metric_loss(features, xp.asarray(labels), gradient)
    loss.backward()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert loss.dtype == dtype and isinstance(features.grad, xp.ndarray) and features.grad.dtype == dtype
    np.testing.assert_allclose(loss.item(), literal_metric(f, labels)[0], **tol)
    np.testing.assert_allclose(to_numpy(features.grad), reference.grad, **tol)


def test_metric_loss_per_image_is_bounded_below_by_minus_four(rng):
    """Each term of unit features is at least 0 - 2^2, and at most |Omega| of them are mined."""
    for trial in range(20):
        x = rng.standard_normal((1, 3, 3, 4)) * rng.uniform(0.1, 10)
        loss = metric_loss(Tensor(x), mixed_labels(rng, (1, 3, 4))).item()
        assert loss >= -4.0  # mining keeps the hardest terms, so the sum may be positive


def test_metric_loss_reaches_minus_four_for_antipodal_collapse_of_a_balanced_image(rng):
    labels = np.array([[[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]]])
    u = np.array([0.6, 0.0, -0.8])
    collapsed = np.where(labels == 1, 1.0, -1.0)[:, None] * u[None, :, None, None]
    noise = rng.standard_normal(collapsed.shape)
    gaps = [metric_loss(Tensor(collapsed + spread * noise), labels).item() + 4.0 for spread in (1.0, 0.1, 0.01, 0.0)]
    assert all(g >= 0 for g in gaps) and gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[3] == pytest.approx(0.0, abs=1e-9)


def test_unknown_metric_gradient_is_named():
    with pytest.raises(ValueError, match=r"metric_loss: gradient must be one of \('authors', 'exact'\), got 'approx'"):
        metric_loss(Tensor(np.ones((1, 2, 2, 2))), np.array([[[1, 0], [0, 1]]]), "approx")


# ----------------------------------------------------------------------------------------------
# Shape and label mistakes: the errors name the loss, the shapes received and what was expected.

def t(*shape, dtype="float64"):
    return Tensor(np.zeros(shape, dtype))


def shape_text(shape):
    return re.escape(str(tuple(shape)))


@pytest.mark.parametrize("label_shape", [(2, 3, 3), (2, 1, 3, 4), (3, 4), (1, 3, 4)], ids=str)
def test_cross_entropy_label_shape(label_shape):
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must have shape \(2, 3, 4\) \(batch, height, width\) to match "
                                         rf"input \(2, 2, 3, 4\), got {shape_text(label_shape)}"):
        softmax_cross_entropy(t(2, 2, 3, 4), np.zeros(label_shape, int))


@pytest.mark.parametrize("logits_shape", [(2, 3, 3, 4), (2, 1, 3, 4), (2, 2, 12)], ids=str)
def test_cross_entropy_needs_two_logit_channels(logits_shape):
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits must have shape \(batch, 2, height, width\), "
                                         rf"got {shape_text(logits_shape)}"):
        softmax_cross_entropy(t(*logits_shape), np.zeros((2, 3, 4), int))


@pytest.mark.parametrize("label_shape", [(2, 4, 3), (2, 12), (2, 5, 3, 4)], ids=str)
def test_metric_loss_label_shape(label_shape):
    with pytest.raises(ValueError, match=r"metric_loss: labels must have shape \(2, 3, 4\) \(batch, height, width\) to match "
                                         rf"input \(2, 5, 3, 4\), got {shape_text(label_shape)}"):
        metric_loss(t(2, 5, 3, 4), np.zeros(label_shape, int))


def test_metric_loss_features_not_4d():
    with pytest.raises(ValueError, match=r"metric_loss: features must have shape \(batch, channels, height, width\), got \(2, 5, 3\)"):
        metric_loss(t(2, 5, 3), np.zeros((2, 5, 3), int))


def test_labels_other_than_zero_and_one_are_named():
    logits = Tensor(np.zeros((1, 2, 2, 2)))
    labels = np.array([[[0, 1], [2, 255]]])
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be 0 \(background\) or 1.*\[0, 1, 2, 255\]"):
        softmax_cross_entropy(logits, labels)
    with pytest.raises(ValueError, match=r"metric_loss: labels must be 0 \(background\) or 1"):
        metric_loss(Tensor(np.zeros((1, 3, 2, 2))), labels)
