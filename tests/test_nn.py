"""minimenet/nn.py: layers (Module, Conv2d, ConvTranspose2d, BatchNorm2d, ReLU, Sequential).

Layers build their parameters on minimenet's selected backend (``minimenet.xp``): NumPy here,
CuPy when the suite runs with MINIMENET_DEVICE=gpu. Expected numbers are derived by hand in the
comments next to them.
"""
import math

import numpy as np
import pytest

import minimenet
from minimenet import Tensor, conv2d, conv_transpose2d, manual_seed, nn
from minimenet.backend import to_numpy

from conftest import small_net


class Encoder(nn.Module):
    def __init__(self):
        self.blocks = [nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)]
        self.head = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2, 1, 2, stride=2))
        self.scale = 2.0  # a plain attribute: neither a parameter nor a module

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def as_xp(array, dtype="float32"):
    return Tensor(minimenet.xp.asarray(array, dtype=dtype))


def test_named_parameters_follow_attribute_paths():
    names = [name for name, _ in small_net().named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.3.weight"]
    names = [name for name, _ in Encoder().named_parameters()]
    assert names == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
                     "head.layers.1.weight", "head.layers.1.bias"]


def test_parameters_are_the_named_tensors_and_require_grad():
    net = small_net()
    params = net.parameters()
    assert [id(p) for p in params] == [id(p) for _, p in net.named_parameters()]
    assert all(isinstance(p, Tensor) and p.requires_grad for p in params)
    assert [p.shape for p in params] == [(3, 2, 3, 3), (3,), (3,), (3,), (2, 3, 1, 1)]
    assert net.num_parameters() == 54 + 3 + 3 + 3 + 6


def test_buffers_are_the_batch_norm_statistics():
    assert [name for name, _ in Encoder().named_buffers()] == ["blocks.1.running_mean", "blocks.1.running_var"]


def test_state_dict_holds_numpy_copies_of_parameters_and_buffers():
    net = small_net()
    state = net.state_dict()
    assert sorted(state) == sorted(["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                                    "layers.1.running_mean", "layers.1.running_var", "layers.3.weight"])
    assert all(type(v) is np.ndarray for v in state.values())
    state["layers.0.weight"][...] = 123.0  # a copy: the model is unchanged
    assert not np.any(to_numpy(net.layers[0].weight.data) == 123.0)


def test_state_dict_roundtrip_reproduces_the_model_in_place():
    source, target = small_net(seed=1), small_net(seed=2)
    x = as_xp(np.random.default_rng(0).standard_normal((2, 2, 4, 5)))
    source(x)  # one training step moves source's running statistics away from their defaults
    weight_before = target.layers[0].weight
    target.load_state_dict(source.state_dict())
    assert target.layers[0].weight is weight_before  # copied in place: optimisers keep their references
    for (name, a), (_, b) in zip(sorted(source.state_dict().items()), sorted(target.state_dict().items())):
        np.testing.assert_array_equal(a, b, err_msg=name)
    source.eval(), target.eval()
    np.testing.assert_array_equal(source(x).numpy(), target(x).numpy())


def test_load_state_dict_names_missing_and_unexpected_keys():
    net = small_net()
    state = net.state_dict()
    del state["layers.0.bias"]
    state["layers.9.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing \['layers.0.bias'\].*unexpected \['layers.9.weight'\]"):
        net.load_state_dict(state)


def test_load_state_dict_names_a_shape_mismatch():
    state = small_net().state_dict()
    state["layers.1.running_var"] = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"layers.1.running_var has shape \(4,\) in the state but \(3,\) in the model"):
        small_net().load_state_dict(state)


def test_train_and_eval_propagate_to_every_submodule():
    model = Encoder()
    modules = [model, *model.blocks, model.head, *model.head.layers]
    assert all(m.training for m in modules)
    assert model.eval() is model
    assert not any(m.training for m in modules)
    model.train()
    assert all(m.training for m in modules)


def test_batch_norm_running_statistics_follow_the_momentum_convention():
    bn = nn.BatchNorm2d(2, momentum=0.1, dtype="float64")
    # Channel 0 holds 1, 2, 3, 4: mean 2.5, unbiased variance 5/3. Channel 1 holds 0, 0, 0, 8:
    # mean 2, unbiased variance (4 + 4 + 4 + 36) / 3 = 16.
    x = np.array([[[[1.0, 2.0]], [[0.0, 0.0]]], [[[3.0, 4.0]], [[0.0, 8.0]]]])  # (2, 2, 1, 2)
    bn(as_xp(x, "float64"))
    # running = (1 - momentum) running + momentum batch, from mean 0 and variance 1.
    np.testing.assert_allclose(to_numpy(bn.running_mean), [0.25, 0.2], rtol=1e-12)
    np.testing.assert_allclose(to_numpy(bn.running_var), [0.9 + 0.1 * 5 / 3, 0.9 + 1.6], rtol=1e-12)
    bn(as_xp(x + 10.0, "float64"))  # means 12.5 and 12, same variances
    np.testing.assert_allclose(to_numpy(bn.running_mean), [0.9 * 0.25 + 1.25, 0.9 * 0.2 + 1.2], rtol=1e-12)
    np.testing.assert_allclose(to_numpy(bn.running_var), [0.9 * (0.9 + 0.5 / 3) + 0.5 / 3, 0.9 * 2.5 + 1.6], rtol=1e-12)


def test_batch_norm_eval_mode_uses_and_keeps_the_running_statistics():
    bn = nn.BatchNorm2d(1, momentum=0.5, eps=0.0, dtype="float64")
    bn.running_mean[...] = 1.0
    bn.running_var[...] = 4.0
    bn.weight.data[...] = 3.0
    bn.bias.data[...] = 0.5
    bn.eval()
    y = bn(as_xp(np.array([5.0, -1.0]).reshape(1, 1, 1, 2), "float64"))
    np.testing.assert_allclose(y.numpy().ravel(), [3.0 * (5.0 - 1.0) / 2.0 + 0.5, 3.0 * (-1.0 - 1.0) / 2.0 + 0.5])
    np.testing.assert_array_equal(to_numpy(bn.running_mean), [1.0])
    np.testing.assert_array_equal(to_numpy(bn.running_var), [4.0])


def test_batch_norm_training_output_is_normalised_per_channel():
    bn = nn.BatchNorm2d(3)
    y = bn(as_xp(np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 7 + 3)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)


def test_xavier_initialisation_is_caffes():
    """U(-a, a), a = sqrt(3 / fan_in), fan_in = the weight's size over its first axis."""
    manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    weights = to_numpy(conv.weight.data)
    bound = math.sqrt(3.0 / (64 * 9))
    assert abs(weights.mean()) < 0.003 and weights.min() >= -bound and weights.max() <= bound
    assert weights.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    np.testing.assert_array_equal(to_numpy(conv.bias.data), 0.0)
    # Transposed: the (in, out, kh, kw) blob's fan-in is out kh kw = 32 * 16, as Caffe counts it.
    deconv = nn.ConvTranspose2d(64, 32, 4, stride=2)
    assert to_numpy(deconv.weight.data).std() == pytest.approx(math.sqrt(1.0 / (32 * 16)), rel=0.03)


def test_manual_seed_makes_initialisation_reproducible():
    a, b, c = small_net(seed=7), small_net(seed=7), small_net(seed=8)
    np.testing.assert_array_equal(to_numpy(a.layers[0].weight.data), to_numpy(b.layers[0].weight.data))
    assert not np.array_equal(to_numpy(a.layers[0].weight.data), to_numpy(c.layers[0].weight.data))


def test_layers_default_to_float32_on_the_selected_backend():
    for p in small_net().parameters():
        assert p.dtype == np.float32 and type(p.data).__module__.split(".")[0] == minimenet.xp.__name__


def test_conv_layers_apply_their_own_parameters():
    manual_seed(3)
    x = as_xp(np.random.default_rng(1).standard_normal((2, 3, 5, 4)))
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1)
    np.testing.assert_array_equal(conv(x).numpy(), conv2d(x, conv.weight, conv.bias, (2, 1), 1).numpy())
    deconv = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1)
    y = deconv(x)
    assert y.shape == (2, 2, 10, 8)
    np.testing.assert_array_equal(y.numpy(), conv_transpose2d(x, deconv.weight, deconv.bias, 2, 1, 1).numpy())


def test_sequential_applies_layers_in_order():
    manual_seed(0)
    conv = nn.Conv2d(1, 2, 1)
    conv.bias.data[...] = minimenet.xp.asarray([-100.0, 100.0], dtype="float32")
    x = as_xp(np.random.default_rng(0).standard_normal((1, 1, 3, 3)))
    y = nn.Sequential(conv, nn.ReLU())(x).numpy()
    np.testing.assert_array_equal(y[0, 0], 0.0)  # conv first, then relu: the -100 channel is clipped
    assert np.all(y[0, 1] > 90.0)
    # The other order: relu first, then conv, so no output is clipped.
    assert np.all(nn.Sequential(nn.ReLU(), conv)(x).numpy()[0, 0] < -90.0)
