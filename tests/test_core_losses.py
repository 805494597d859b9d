"""MEnet's losses: pixel-wise softmax cross entropy with hard negative mining (Eq. 1) and the
centroid metric loss (Eq. 3).

Gradient checks: ``minimenet.gradcheck`` in float64 with central differences (eps 1e-5), passing
when every checked element has |analytic - numeric| <= rtol * max(|analytic|, |numeric|, floor)
with rtol = 1e-6 and the absolute floor 1e-3. They run on NumPy; the float32 value and gradient
checks run on every available backend (on the GPU the metric loss is our CUDA kernel).
"""
import numpy as np
import pytest

from minimenet import Tensor, gradcheck, l2_normalize, metric_loss, softmax_cross_entropy
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


def test_mining_selects_all_minority_pixels_and_as_many_hardest_majority_pixels(xp):
    labels = np.array([[1, 0, 0, 0, 1, 0, 0, 0]])           # 2 salient (minority), 6 background
    losses = np.array([[0.1, 0.9, 0.2, 0.7, 0.05, 0.3, 0.8, 0.1]])
    # Background losses: 0.9 (pixel 1), 0.8 (pixel 6) are the two hardest.
    expected = np.array([[1, 1, 0, 0, 1, 0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(mask(xp, losses, labels), expected)


def test_mining_when_salient_is_the_majority(xp):
    labels = np.array([[1, 1, 0, 1, 1, 1, 0]])               # 5 salient, 2 background (minority)
    losses = np.array([[0.5, 2.0, 0.0, 0.1, 3.0, 0.4, 0.0]])
    expected = np.array([[0, 1, 1, 0, 1, 0, 1]], dtype=bool)  # both background + salient 4 (3.0), 1 (2.0)
    np.testing.assert_array_equal(mask(xp, losses, labels), expected)


def test_mining_single_class_image_selects_nothing(xp):
    labels = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    losses = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.5, 0.1, 0.2, 0.6]])
    expected = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(mask(xp, losses, labels), expected)


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
# softmax_cross_entropy (Eq. 1).

def test_cross_entropy_hand_derived_values():
    # Equal logits: every pixel costs ln 2.
    loss = softmax_cross_entropy(Tensor(np.zeros((1, 2, 2, 2))), np.array([[[1, 0], [0, 0]]]), hard_negative_mining=False)
    assert loss.item() == pytest.approx(np.log(2.0), rel=1e-12)
    # One pixel, logits (0, ln 3): P(salient) = 3/4.
    logits = Tensor(np.array([0.0, np.log(3.0)]).reshape(1, 2, 1, 1))
    assert softmax_cross_entropy(logits, np.ones((1, 1, 1), int), False).item() == pytest.approx(-np.log(0.75), rel=1e-12)
    assert softmax_cross_entropy(logits, np.zeros((1, 1, 1), int), False).item() == pytest.approx(-np.log(0.25), rel=1e-12)


@pytest.mark.parametrize("mining", [False, True], ids=["all_pixels", "mining"])
def test_cross_entropy_value_is_the_mean_over_the_selected_pixels(mining, xp, rng):
    logits = rng.standard_normal((3, 2, 3, 4)) * 2
    labels = mixed_labels(rng, (3, 3, 4))
    labels[2] = 0  # a single-class image: excluded by mining
    pixel_loss = reference_pixel_loss(logits, labels)
    if mining:
        selected = to_numpy(hard_negative_mask(xp.asarray(pixel_loss.reshape(3, -1)), xp.asarray(labels.reshape(3, -1))))
        assert not selected[2].any()
        expected = pixel_loss.reshape(3, -1)[selected].mean()
    else:
        expected = pixel_loss.mean()
    for dtype, rtol in [(np.float64, 1e-12), (np.float32, 1e-5)]:
        loss = softmax_cross_entropy(Tensor(xp.asarray(logits, dtype=dtype)), xp.asarray(labels), mining)
        assert loss.dtype == dtype
        assert loss.item() == pytest.approx(expected, rel=rtol)


@pytest.mark.parametrize("mining", [False, True], ids=["all_pixels", "mining"])
def test_cross_entropy_gradcheck(mining, rng):
    logits = Tensor(rng.standard_normal((2, 2, 3, 4)) * 2, requires_grad=True)
    labels = mixed_labels(rng, (2, 3, 4))
    check(lambda z: softmax_cross_entropy(z, labels, mining), [logits])


@pytest.mark.parametrize("mining", [False, True], ids=["all_pixels", "mining"])
def test_cross_entropy_gradcheck_with_single_class_images(mining, rng):
    logits = Tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True)
    labels = mixed_labels(rng, (3, 2, 3))
    labels[1], labels[2] = 1, 0
    check(lambda z: softmax_cross_entropy(z, labels, mining), [logits])


def test_cross_entropy_mining_gives_zero_gradient_to_unselected_pixels(rng):
    logits = Tensor(rng.standard_normal((2, 2, 3, 4)), requires_grad=True)
    labels = mixed_labels(rng, (2, 3, 4))
    labels[1] = 1
    softmax_cross_entropy(logits, labels, True).backward()
    pixel_loss = reference_pixel_loss(logits.data, labels)
    selected = hard_negative_mask(pixel_loss.reshape(2, -1), labels.reshape(2, -1)).reshape(labels.shape)
    grad_norm = np.abs(logits.grad).sum(axis=1)
    assert np.all(grad_norm[~selected] == 0)
    assert np.all(grad_norm[selected] > 0)


def test_cross_entropy_on_a_batch_of_single_class_images_is_zero_without_nan():
    logits = Tensor(np.random.default_rng(0).standard_normal((2, 2, 2, 2)), requires_grad=True)
    labels = np.stack([np.ones((2, 2), int), np.zeros((2, 2), int)])
    loss = softmax_cross_entropy(logits, labels, True)
    loss.backward()
    assert loss.item() == 0.0
    assert np.all(logits.grad == 0)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = Tensor(np.array([1000.0, -1000.0, -1000.0, 1000.0]).reshape(1, 2, 1, 2), requires_grad=True)
    loss = softmax_cross_entropy(logits, np.array([[[0, 0]]]), False)  # pixel 0 right, pixel 1 wrong by 2000
    loss.backward()
    assert loss.item() == pytest.approx(1000.0)
    assert np.all(np.isfinite(logits.grad))


# ----------------------------------------------------------------------------------------------
# metric_loss (Eq. 3).

def centroids(f, labels):
    """Per image: salient centroid, background centroid (C-vectors), computed with explicit loops."""
    feats = f.reshape(f.shape[0], f.shape[1], -1)
    flat = labels.reshape(labels.shape[0], -1)
    out = []
    for n in range(f.shape[0]):
        sal = [feats[n, :, i] for i in range(flat.shape[1]) if flat[n, i] == 1]
        bg = [feats[n, :, i] for i in range(flat.shape[1]) if flat[n, i] == 0]
        out.append((np.mean(sal, axis=0), np.mean(bg, axis=0)))
    return out


def eq3_literal(f, labels):
    """Eq. 3 term by term: sum over images with both regions, then / (N |Omega|)."""
    feats = f.reshape(f.shape[0], f.shape[1], -1)
    flat = labels.reshape(labels.shape[0], -1)
    total = 0.0
    for n in range(f.shape[0]):
        if flat[n].min() == flat[n].max():
            continue
        c_s, c_b = centroids(f[n:n + 1], labels[n:n + 1])[0]
        for i in range(flat.shape[1]):
            own, other = (c_s, c_b) if flat[n, i] == 1 else (c_b, c_s)
            total += ((feats[n, :, i] - own) ** 2).sum() - ((feats[n, :, i] - other) ** 2).sum()
    return total / (f.shape[0] * flat.shape[1])


def test_metric_loss_hand_derived_two_pixels():
    # One channel, salient pixel at a, background at b: each term is -(a - b)^2, loss = -2 (a-b)^2 / 2.
    f = Tensor(np.array([1.0, -1.0]).reshape(1, 1, 1, 2), requires_grad=True)
    loss = metric_loss(f, np.array([[[1, 0]]]))
    assert loss.item() == pytest.approx(-4.0, rel=1e-12)
    loss.backward()
    # d/da of -(a - b)^2 = -2 (a - b) = -4; d/db = +4.
    np.testing.assert_allclose(f.grad.ravel(), [-4.0, 4.0], rtol=1e-12)


def test_metric_loss_equals_eq3_computed_term_by_term(rng):
    f = rng.standard_normal((3, 4, 3, 3))
    labels = mixed_labels(rng, (3, 3, 3))
    labels[2] = 1
    assert metric_loss(Tensor(f), labels).item() == pytest.approx(eq3_literal(f, labels), rel=1e-12)


def test_eq3_intra_class_terms_cancel_per_image(rng):
    """sum_i (||f_i - c_own||^2 - ||f_i - c_other||^2) = -|Omega| ||c_s - c_b||^2, per image."""
    f = rng.standard_normal((4, 5, 3, 4)) * 3 + 1
    labels = mixed_labels(rng, (4, 3, 4))
    omega = 12
    per_image = []
    for n in range(4):
        (c_s, c_b), = centroids(f[n:n + 1], labels[n:n + 1])
        feats, flat = f[n].reshape(5, -1), labels[n].ravel()
        lhs = sum(((feats[:, i] - (c_s if flat[i] else c_b)) ** 2).sum()
                  - ((feats[:, i] - (c_b if flat[i] else c_s)) ** 2).sum() for i in range(omega))
        rhs = -omega * ((c_s - c_b) ** 2).sum()
        assert lhs == pytest.approx(rhs, rel=1e-10)
        per_image.append(rhs)
    # And the loss is their sum over N |Omega|.
    assert metric_loss(Tensor(f), labels).item() == pytest.approx(sum(per_image) / (4 * omega), rel=1e-10)


def test_metric_loss_gradcheck_on_l2_normalised_features(rng):
    x = Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    labels = mixed_labels(rng, (2, 3, 3))
    check(lambda x: metric_loss(l2_normalize(x), labels), [x])


def test_metric_loss_gradcheck_on_raw_features(rng):
    f = Tensor(rng.standard_normal((2, 2, 2, 3)), requires_grad=True)
    check(lambda f: metric_loss(f, mixed_labels(np.random.default_rng(5), (2, 2, 3))), [f])


def test_metric_loss_gradcheck_with_all_salient_and_all_background_images(rng):
    x = Tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True)
    labels = mixed_labels(rng, (3, 2, 3))
    labels[1], labels[2] = 1, 0
    check(lambda x: metric_loss(l2_normalize(x), labels), [x])


def test_single_region_images_contribute_zero_and_no_nan(rng):
    f = rng.standard_normal((3, 2, 2, 3))
    labels = mixed_labels(rng, (3, 2, 3))
    labels[1], labels[2] = 1, 0
    features = Tensor(f, requires_grad=True)
    loss = metric_loss(features, labels)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(features.grad))
    np.testing.assert_array_equal(features.grad[1:], 0.0)
    # The mixed image alone, divided by the batch size it was part of.
    alone = metric_loss(Tensor(f[:1]), labels[:1]).item()
    assert loss.item() == pytest.approx(alone / 3, rel=1e-12)
    # A batch with no mixed image at all.
    only_single = metric_loss(Tensor(f[1:], requires_grad=True), labels[1:])
    assert only_single.item() == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_metric_loss_value_and_gradient_on_every_backend(dtype, xp, rng):
    f = rng.standard_normal((3, 4, 5, 3))
    labels = mixed_labels(rng, (3, 5, 3))
    labels[2] = 0
    reference = Tensor(f, requires_grad=True)
    metric_loss(reference, labels).backward()
    features = Tensor(xp.asarray(f, dtype=dtype), requires_grad=True)
    loss = metric_loss(features, xp.asarray(labels))
    loss.backward()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert loss.dtype == dtype and isinstance(features.grad, xp.ndarray) and features.grad.dtype == dtype
    np.testing.assert_allclose(loss.item(), eq3_literal(f, labels), **tol)
    np.testing.assert_allclose(to_numpy(features.grad), reference.grad, **tol)


def test_metric_loss_on_l2_normalised_features_is_bounded_below_by_minus_four(rng):
    for trial in range(20):
        x = rng.standard_normal((2, 3, 3, 4)) * rng.uniform(0.1, 10)
        labels = mixed_labels(rng, (2, 3, 4))
        loss = metric_loss(l2_normalize(Tensor(x)), labels).item()
        assert -4.0 <= loss < 0.0


def test_metric_loss_approaches_minus_four_for_antipodal_collapse(rng):
    """Salient features all at u, background at -u (unit u): the loss tends to -4 as the spread vanishes."""
    labels = mixed_labels(rng, (2, 3, 4))
    u = np.array([0.6, 0.0, -0.8])
    sign = np.where(labels == 1, 1.0, -1.0)[:, None]                        # (2, 1, 3, 4)
    collapsed = sign * u[None, :, None, None]
    noise = rng.standard_normal(collapsed.shape)
    gaps = []
    for spread in [1.0, 0.1, 0.01, 0.0]:
        loss = metric_loss(l2_normalize(Tensor(collapsed + spread * noise)), labels).item()
        assert loss >= -4.0
        gaps.append(loss + 4.0)
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[3] == pytest.approx(0.0, abs=1e-9)
    assert gaps[2] < 1e-2
