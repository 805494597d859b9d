"""minimenet/optim.py: the SGD optimiser, and a tiny conv net that learns with it.

Layers build their parameters on minimenet's selected backend (``minimenet.xp``): NumPy here,
CuPy when the suite runs with MINIMENET_DEVICE=gpu. Expected numbers are derived by hand in the
comments next to them.
"""
import numpy as np
import pytest

import minimenet
from minimenet import SGD, Tensor, softmax_cross_entropy
from minimenet.backend import to_numpy

from conftest import small_net


def as_xp(array, dtype="float32"):
    return Tensor(minimenet.xp.asarray(array, dtype=dtype))


def param(values):
    return Tensor(minimenet.xp.asarray(values, dtype="float64"), requires_grad=True)


def test_sgd_two_steps_with_momentum_and_weight_decay_by_hand():
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    p.grad = minimenet.xp.asarray([0.5, 1.0])
    opt.step()
    # v1 = 0.1 (g1 + 0.01 p0) = [0.051, 0.098];  p1 = p0 - v1 = [0.949, -2.098]
    np.testing.assert_allclose(to_numpy(p.data), [0.949, -2.098], rtol=1e-12)
    p.grad = minimenet.xp.asarray([-1.0, 0.25])
    opt.step()
    # v2 = 0.9 v1 + 0.1 (g2 + 0.01 p1) = [0.0459 - 0.099051, 0.0882 + 0.022902] = [-0.053151, 0.111102]
    # p2 = p1 - v2 = [1.002151, -2.209102]
    np.testing.assert_allclose(to_numpy(p.data), [1.002151, -2.209102], rtol=1e-12)


def test_sgd_clip_norm_rescales_the_global_gradient():
    a, b = param([0.0]), param([0.0, 0.0])
    opt = SGD([a, b], lr=1.0, clip_norm=1.0)
    a.grad, b.grad = minimenet.xp.asarray([3.0]), minimenet.xp.asarray([0.0, 4.0])
    assert opt.step() == pytest.approx(5.0)  # the norm before clipping
    np.testing.assert_allclose(to_numpy(a.data), [-0.6])
    np.testing.assert_allclose(to_numpy(b.data), [0.0, -0.8])
    # Below the threshold the gradient is used as it is.
    a.grad, b.grad = minimenet.xp.asarray([0.3]), minimenet.xp.asarray([0.0, 0.4])
    assert opt.step() == pytest.approx(0.5)
    np.testing.assert_allclose(to_numpy(a.data), [-0.9])
    np.testing.assert_allclose(to_numpy(b.data), [0.0, -1.2])


def test_sgd_skips_parameters_without_gradient_and_zero_grad_clears():
    a, b = param([1.0]), param([2.0])
    opt = SGD([a, b], lr=0.5)
    a.grad = minimenet.xp.asarray([1.0])
    opt.step()
    np.testing.assert_allclose(to_numpy(a.data), [0.5])
    np.testing.assert_allclose(to_numpy(b.data), [2.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_sgd_state_dict_roundtrip_and_mismatch():
    p = param([1.0, 2.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = minimenet.xp.asarray([1.0, -1.0])
    opt.step()
    other = SGD([param([0.0, 0.0])], lr=0.1, momentum=0.9)
    other.load_state_dict(opt.state_dict())
    np.testing.assert_allclose(to_numpy(other.velocities[0]), [0.1, -0.1])
    with pytest.raises(ValueError, match="holds 1 velocities but this optimiser has 2 parameters"):
        SGD([param([0.0]), param([0.0])], lr=0.1).load_state_dict(opt.state_dict())


def test_sgd_without_parameters_raises():
    with pytest.raises(ValueError, match="no parameters"):
        SGD([], lr=0.1)


def test_tiny_conv_net_learns_a_toy_segmentation():
    """conv-bn-relu-conv trained with SGD to label the pixels brighter than their neighbourhood."""
    data = np.random.default_rng(0)
    x = data.standard_normal((8, 2, 6, 6)).astype(np.float32)
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype(np.int64)
    net = small_net(seed=0)
    opt = SGD(net.parameters(), lr=0.03, momentum=0.9, clip_norm=5.0)
    inputs, targets = as_xp(x), minimenet.xp.asarray(labels)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = softmax_cross_entropy(net(inputs), targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    net.eval()
    with minimenet.no_grad():
        prediction = to_numpy(net(inputs).data).argmax(axis=1)
    assert (prediction == labels).mean() > 0.9


def test_sgd_in_chunks_matches_the_whole_parameter_update_and_counts_the_change(monkeypatch, rng):
    """Chunks of 3 elements (a ragged last one), a non-contiguous parameter, and the version
    counter that tells a stale graph its inputs changed."""
    from minimenet import optim
    values = rng.standard_normal((4, 5))
    grads = [rng.standard_normal((4, 5)) for _ in range(2)]

    def two_steps(chunk, layout):
        monkeypatch.setattr(optim, "UPDATE_CHUNK", chunk)
        p = Tensor(minimenet.xp.asarray(layout(values.copy())), requires_grad=True)
        opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, clip_norm=1.0)
        norms = []
        for g in grads:
            p.grad = minimenet.xp.asarray(g)
            norms.append(opt.step())
        return to_numpy(p.data), norms, p.version
    whole, whole_norms, _ = two_steps(10**6, lambda a: a)
    chunked, chunked_norms, version = two_steps(3, lambda a: np.asfortranarray(a))
    np.testing.assert_allclose(chunked, whole, rtol=1e-13)
    np.testing.assert_allclose(chunked_norms, whole_norms, rtol=1e-13)
    assert version >= 2


@pytest.mark.parametrize("clip_norm", [None, 1e9], ids=["norm in the update's pass", "norm before clipping"])
def test_sgd_step_returns_the_gradient_norm_before_the_update(monkeypatch, rng, clip_norm):
    """With or without clipping, in chunks (a ragged last one), and a parameter without a gradient."""
    from minimenet import optim
    monkeypatch.setattr(optim, "UPDATE_CHUNK", 4)
    params = [Tensor(minimenet.xp.asarray(rng.standard_normal(shape)), requires_grad=True) for shape in [(3, 3), (5,), (2,)]]
    grads = [rng.standard_normal(p.shape) for p in params[:2]]
    for p, g in zip(params, grads):
        p.grad = minimenet.xp.asarray(g)
    opt = SGD(params, lr=0.5, momentum=0.9, weight_decay=0.1, clip_norm=clip_norm)
    expected = np.sqrt(sum((g ** 2).sum() for g in grads))
    assert opt.grad_norm() == pytest.approx(expected, rel=1e-12)
    before = [to_numpy(p.data).copy() for p in params]
    assert opt.step() == pytest.approx(expected, rel=1e-12)
    for p, g, old in zip(params, grads, before):
        np.testing.assert_allclose(to_numpy(p.data), old - 0.5 * (g + 0.1 * old), rtol=1e-12)
    np.testing.assert_array_equal(to_numpy(params[2].data), before[2])


@pytest.mark.parametrize("clip_norm", [None, 1.0], ids=["no clipping", "clipping"])
def test_small_parameters_updated_as_groups_match_one_by_one(monkeypatch, rng, clip_norm):
    """Parameters under UPDATE_CHUNK go by groups of one (lr, decay) multiplier pair, updated on
    their concatenated gradients: the same values, norms, versions and momentum state as one
    parameter at a time; a group with a parameter that got no gradient falls back to that."""
    from minimenet import optim
    shapes = [(3, 2), (4,), (2, 2, 1, 3), (5,), (1,)]
    multipliers = [(1.0, 1.0), (2.0, 0.0), (1.0, 1.0), (2.0, 0.0), (1.0, 1.0)]
    values = [rng.standard_normal(shape) for shape in shapes]
    grads = [[rng.standard_normal(shape) for shape in shapes] for _ in range(3)]
    grads[2][4] = None  # no gradient: the (1, 1) group goes one by one in the last step

    def three_steps(chunk):
        monkeypatch.setattr(optim, "UPDATE_CHUNK", chunk)
        params = [Tensor(minimenet.xp.asarray(v.copy()), requires_grad=True) for v in values]
        opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01, clip_norm=clip_norm, multipliers=multipliers)
        norms = []
        for step in grads:
            for p, g in zip(params, step):
                p.grad = None if g is None else minimenet.xp.asarray(g)
            norms.append(opt.step())
        return opt, [to_numpy(p.data) for p in params], norms, [p.version for p in params]
    grouped, grouped_values, grouped_norms, grouped_versions = three_steps(10**6)
    single, single_values, single_norms, single_versions = three_steps(1)
    assert [sorted(indices) for indices, _ in grouped.groups] == [[0, 2, 4], [1, 3]] and single.groups == []
    for a, b in zip(grouped_values, single_values):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(grouped_norms, single_norms, rtol=1e-12)
    assert grouped_versions == single_versions and min(grouped_versions) >= 2
    for a, b in zip(grouped.velocities, single.velocities):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-12)


def test_a_loaded_momentum_state_reaches_the_grouped_update(rng):
    """load_state_dict writes into the group's velocities, so the next step starts from them."""
    params = [Tensor(minimenet.xp.asarray(rng.standard_normal(3)), requires_grad=True) for _ in range(2)]
    opt = SGD(params, lr=1.0, momentum=0.5)
    assert len(opt.groups) == 1
    opt.load_state_dict({"velocity.0": np.full(3, 2.0), "velocity.1": np.full(3, -4.0)})
    before = [to_numpy(p.data).copy() for p in params]
    for p in params:
        p.grad = minimenet.xp.zeros(3)
    opt.step()
    np.testing.assert_allclose(to_numpy(params[0].data), before[0] - 1.0)
    np.testing.assert_allclose(to_numpy(params[1].data), before[1] + 2.0)
