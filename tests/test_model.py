"""MEnet's architecture, loss (Eq. 4), inference (Eq. 5) and a whole-model float64 gradcheck."""
import numpy as np
import pytest

import minimenet as mm
from minimenet.config import network_config
from minimenet.model import MEnet, MEnetConfig, metric_saliency


def small_config(**changes):
    return MEnetConfig(**{"image_size": 32, "width": 2, **changes})


def random_batch(config, batch=2, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    s = config.image_size
    images = rng.uniform(0, 255, (batch, 3, s, s)).astype(dtype)
    yy, xx = np.mgrid[:s, :s]
    masks = np.stack([((yy - s / 2 - i) ** 2 + (xx - s / 2) ** 2 < (s / 4) ** 2) for i in range(batch)]).astype(np.int32)
    return mm.Tensor(mm.xp.asarray(images)), masks  # on the parameters' backend (CuPy under MINIMENET_DEVICE=gpu)


def test_paper_preset_is_the_authors_network():
    # 184 959 166 parameters, counted from the authors' layer list (reference/authors-menet.md).
    model = MEnet(network_config("paper"))
    assert model.num_parameters() == 184_959_166
    assert network_config("paper").widths == [32, 64, 128, 256, 512, 1024]


def test_tiny_preset_is_the_same_network_scaled():
    assert MEnet(network_config("tiny")).num_parameters() == 1_428_690
    assert network_config("tiny").widths == [4, 8, 16, 32, 64, 128]


def test_seventy_two_convolutions_and_seventy_two_batch_norms():
    model = MEnet(network_config("tiny"))
    modules = list(model.modules())
    convs = [m for m in modules if isinstance(m, mm.nn.Conv2d)]
    deconvs = [m for m in modules if isinstance(m, mm.nn.ConvTranspose2d)]
    assert len(convs) + len(deconvs) == 72 and len(deconvs) == 11  # expand + 5 x (4x4 main, 2x2 shortcut)
    assert sum(isinstance(m, mm.nn.BatchNorm2d) for m in modules) == 72
    assert all(m.bias is not None for m in convs) and all(m.bias is None for m in deconvs)


def test_every_level_has_the_documented_shape():
    config = network_config("tiny")
    model = MEnet(config)
    images, masks = random_batch(config, batch=2)
    c, s = config.widths, config.image_size
    encoded = [model.stem(images)]
    for level in model.down:
        encoded.append(level(encoded[-1]))
    assert [e.shape for e in encoded] == [(2, c[i], s >> i, s >> i) for i in range(6)]
    bottleneck = model.squeeze(encoded[-1])
    assert bottleneck.shape == (2, c[5], 1, 1)
    x = d5 = model.expand(bottleneck)
    assert d5.shape == encoded[5].shape
    for j, (level, skip) in zip(reversed(range(5)), zip(model.up, reversed(encoded[1:]))):
        x = level(mm.concat([x, skip]))
        assert x.shape == (2, c[j], s >> j, s >> j)
    out = model(images)
    assert out.scale_maps.shape == (2, 13, s, s)
    assert out.logits.shape == (2, 2, s, s) and out.features.shape == (2, 16, s, s)
    assert np.abs(mm.backend.to_numpy(out.features.data)).max() <= 1  # tanh
    loss, parts = model.loss(out, masks)
    assert set(parts) == {"metric", "ce"} and np.isclose(loss.item(), parts["metric"] + parts["ce"], rtol=1e-5)


def test_scale_maps_are_block_copies_of_each_level(monkeypatch):
    """Scale map 6 (on e5, S/32) must be constant on 32 x 32 blocks, and map 1 (on e0) need not be."""
    config = small_config()
    out = MEnet(config)(random_batch(config)[0])
    maps = mm.backend.to_numpy(out.scale_maps.data)
    e5_map = maps[:, 6]
    assert np.all(e5_map == e5_map[:, :1, :1])
    d5_map, g4_map = maps[:, 12], maps[:, 11]
    assert np.all(d5_map == d5_map[:, :1, :1]) and np.all(g4_map[:, :16, :16] == g4_map[:, :1, :1])
    assert np.ptp(maps[:, 1]) > 0


def test_parameters_are_listed_in_the_order_the_forward_pass_uses_them(monkeypatch):
    config = small_config()
    model = MEnet(config)
    images, _ = random_batch(config)
    used, seen = [], set()
    original = mm.Tensor.from_op.__func__

    def record(cls, data, parents, backward, op):
        for p in parents:
            if p.requires_grad and p.op == "leaf" and id(p) not in seen:
                seen.add(id(p))
                used.append(p)
        return original(cls, data, parents, backward, op)
    monkeypatch.setattr(mm.Tensor, "from_op", classmethod(record))
    model(images)
    assert [id(p) for p in used] == [id(p) for p in model.parameters()]


def test_learning_rate_multipliers_double_convolution_biases_only():
    model = MEnet(small_config())
    multipliers = dict(zip((name for name, _ in model.named_parameters()), model.learning_rate_multipliers()))
    assert multipliers["stem.conv.bias"] == (2.0, 0.0) and multipliers["scale_maps.0.layers.2.bias"] == (2.0, 0.0)
    assert multipliers["stem.conv.weight"] == (1.0, 1.0) and multipliers["stem.bn.bias"] == (1.0, 1.0)
    assert multipliers["up.0.main.layers.0.layers.2.weight"] == (1.0, 1.0)
    assert sum(m == (2.0, 0.0) for m in multipliers.values()) == 61  # every convolution, no transposed one


def test_xavier_initialisation_follows_caffe():
    mm.manual_seed(0)
    model = MEnet(network_config("tiny"))
    named = dict(model.named_parameters())
    conv = mm.backend.to_numpy(named["down.4.main.layers.1.layers.2.weight"].data)      # (128, 128, 3, 3)
    deconv = mm.backend.to_numpy(named["up.0.main.layers.0.layers.2.weight"].data)      # (256, 64, 4, 4)
    for weight, fan_in in ((conv, 128 * 9), (deconv, 64 * 16)):
        bound = np.sqrt(3 / fan_in)
        assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.99 * bound
        assert abs(weight.std() - bound / np.sqrt(3)) < 0.02 * bound
    assert all(not mm.backend.to_numpy(named[n].data).any() for n in named if n.endswith("bias") and "bn" not in n
               and ".layers.1." not in n)


@pytest.mark.parametrize("variant, terms, maps", [("ce-only", {"ce"}, {"ce"}), ("ce-plain", {"ce"}, {"ce"}),
                                                  ("menet", {"ce", "metric"}, {"ce", "metric", "metric_paper"})])
def test_ablation_variants(variant, terms, maps):
    config = small_config(variant=variant)
    model = MEnet(config)
    images, masks = random_batch(config)
    out = model(images)
    assert (out.features is None) == (variant != "menet")
    assert (out.scale_maps is None) == (variant == "ce-plain")
    _, parts = model.loss(out, masks)
    assert set(parts) == terms
    result = model.saliency_maps(images)
    assert set(result) == maps and all(m.shape == (2, 32, 32) for m in result.values())


def test_wrong_image_size_is_a_clear_error():
    model = MEnet(small_config())
    with pytest.raises(ValueError, match=r"MEnet: expected images of shape \(batch, 3, 32, 32\).*got \(1, 3, 64, 64\)"):
        model(mm.Tensor(np.zeros((1, 3, 64, 64), np.float32)))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="multiple of 32"):
        MEnetConfig(image_size=48, width=2)
    with pytest.raises(ValueError, match="unknown preset"):
        network_config("huge")
    with pytest.raises(ValueError, match="metric_gradient must be one of"):
        small_config(metric_gradient="approximate")
    with pytest.raises(ValueError, match="background must be one of"):
        small_config(background="centre")


def test_whole_model_gradcheck_in_float64():
    """A few parameters of every layer type, and the input, against finite differences.

    eps is 1e-7 rather than gradcheck's 1e-5: with thousands of ReLUs (and the mining's ranking),
    a 1e-5 step moves some unit across its kink and the difference quotient then measures
    a different branch; 1e-7 keeps every unit on its side for this seed while float64's rounding
    error stays below the 1e-6 tolerance. S = 64, not 32: at 32 the deepest level is 1 x 1, and
    its batch norms over a batch of 2 standardise two numbers, a function so curved that no
    step size fits. The exact metric gradient is the gradient of the value; the authors' one
    is checked against its surrogate in test_losses.py.
    """
    mm.manual_seed(3)
    config = small_config(dtype="float64", metric_gradient="exact", image_size=64)
    model = MEnet(config)
    images, masks = random_batch(config, dtype="float64", seed=1)
    images.requires_grad = True
    named = dict(model.named_parameters())
    chosen = [named[n] for n in ("down.0.main.layers.0.layers.2.weight",      # 3x3 stride-2 conv
                                 "down.2.shortcut.layers.2.weight",           # 1x1 stride-2 shortcut
                                 "squeeze.layers.2.weight",                   # global k x k conv (k = 2)
                                 "stem.units.1.body.layers.0.layers.0.weight",  # batch-norm scale
                                 "expand.layers.2.weight",                    # k x k deconvolution
                                 "up.3.main.layers.0.layers.2.weight",        # 4x4 stride-2 deconvolution
                                 "up.1.shortcut.layers.2.weight",             # 2x2 stride-2 deconvolution
                                 "scale_maps.7.layers.2.bias",                # scale map conv (bias)
                                 "feature_head.layers.0.weight",              # the 16-kernel conv
                                 "ce_head.layers.1.bias")]                    # CE head's batch norm

    def total_loss(*_):
        return model.loss(model(images), masks)[0]
    report = mm.gradcheck(total_loss, [images] + chosen, eps=1e-7, max_elements=3)
    assert report.ok and len(report.rows) == 11


def test_paper_reading_measures_distance_to_the_background_mean():
    # Two background pixels at e0, one salient pixel at e1: distances 0, 0, sqrt(2) -> 0, 0, 1.
    features = np.zeros((1, 2, 1, 3))
    features[0, 0, 0, :2] = 1
    features[0, 1, 0, 2] = 1
    p_salient = np.array([[[0.1, 0.2, 0.9]]])
    np.testing.assert_allclose(metric_saliency(features, p_salient, "paper"), [[[0, 0, 1]]], atol=1e-12)


def test_paper_reading_of_an_image_called_salient_everywhere_still_gives_a_map():
    # Once a 0/0 gave an all-zero map here. Pixels 0-4 at e0, 5-9 at e1; the least salient
    # pixel (7) stands in for the background, so the e0 half lights up.
    features = np.zeros((1, 2, 1, 10))
    features[0, 0, 0, :5] = 1
    features[0, 1, 0, 5:] = 1
    p_salient = np.full((1, 1, 10), 0.9)
    p_salient[0, 0, 7] = 0.6
    maps = metric_saliency(features, p_salient, "paper")
    np.testing.assert_allclose(maps[0, 0], [1] * 5 + [0] * 5, atol=1e-12)


def border_scene(size=64, salient_everywhere=False):
    """Unit features: background at b on most of the border, a foreign patch at -b on part of
    it, an object at e1 inside; the band is round(20 * 64 / 224) = 6 pixels wide."""
    b, e1 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    features = np.zeros((1, 3, size, size)) + b[None, :, None, None]
    features[0, :, :6, :20] = -b[:, None, None]                   # 120 of the band's 1392 pixels
    features[0, :, 20:44, 20:44] = e1[:, None, None]
    p_salient = np.full((1, size, size), 1.0 if salient_everywhere else 0.1)
    p_salient[0, 20:44, 20:44] = 0.9
    p_salient[0, -6:, :] = 0.7                                     # called salient: never sampled
    features[0, :, -6:, :] = e1[:, None, None]
    return features, p_salient


def test_authors_reading_uses_the_border_majority_and_squared_distances():
    features, p_salient = border_scene()
    maps = metric_saliency(features, p_salient, "authors")
    # Centroid b (the bigger cluster of the sample): b -> 0, e1 -> |e1 - b|^2 = 2, -b -> 4.
    assert np.all(maps[0, 30:40, 30:40] == 0.5) and np.all(maps[0, :6, :20] == 1) and maps[0, 10, 50] == 0
    np.testing.assert_array_equal(maps, metric_saliency(features, p_salient, "authors"))  # fixed seed
    paper = metric_saliency(features, p_salient, "paper")
    assert not np.allclose(paper, maps)


def test_authors_reading_of_an_image_called_salient_everywhere_samples_the_whole_band():
    features, p_salient = border_scene(salient_everywhere=True)
    maps = metric_saliency(features, p_salient, "authors")
    assert np.isfinite(maps).all() and maps.min() == 0 and maps.max() == 1
    # The band is mostly b, so b is still the background.
    assert maps[0, 10, 50] == 0 and np.all(maps[0, :6, :20] == 1)


def test_inference_runs_each_brc_and_brd_as_one_op_with_the_same_result(monkeypatch):
    """In eval mode without a graph every BRC is one batch_norm_relu_conv2d and every BRD one
    batch_norm_relu_conv_transpose2d, the residual sums inside them; in eval mode with a graph
    they are the three ops and an add; both give the same network output."""
    config = small_config()
    model = MEnet(config)
    images, _ = random_batch(config)
    model(images)  # training mode: the batch norms' running statistics move away from 0 and 1
    model.eval()
    fused = []
    for name in ("batch_norm_relu_conv2d", "batch_norm_relu_conv_transpose2d"):
        original = getattr(mm.model, name)
        monkeypatch.setattr(mm.model, name, lambda *args, _name=name, _original=original: fused.append((_name, args[-1] is not None))
                            or _original(*args))
    expected = model(images)
    assert not fused
    with mm.no_grad():
        out = model(images)
    brcs, brds = (sum(isinstance(m, kind) for m in model.modules()) for kind in (mm.model.BRC, mm.model.BRD))
    assert (brcs, brds) == (58, 11)
    assert [name for name, _ in fused].count("batch_norm_relu_conv2d") == brcs
    assert [name for name, _ in fused].count("batch_norm_relu_conv_transpose2d") == brds
    # a residual in each of the 12 residual units' second BRC, and in the 10 levels' shortcuts (5 BRCs, 5 BRDs)
    assert sum(residual for _, residual in fused) == 22
    for got, want in ((out.logits, expected.logits), (out.features, expected.features), (out.scale_maps, expected.scale_maps)):
        np.testing.assert_allclose(mm.backend.to_numpy(got.data), mm.backend.to_numpy(want.data), rtol=1e-5, atol=1e-5)


def test_training_runs_each_brc_and_brd_as_one_op_with_the_same_loss_gradients_and_statistics(monkeypatch):
    """In training every BRC is one batch_norm_relu_conv2d_training and every BRD one
    batch_norm_relu_conv_transpose2d_training, the residual sums inside them. Against the three
    ops and an add (float64, a step's loss, every parameter's gradient and every running
    statistic): the same up to rounding."""
    from minimenet import nn

    config = small_config(dtype="float64")
    images, masks = random_batch(config, batch=3, dtype="float64")

    def step():
        mm.manual_seed(0)
        model = MEnet(config)
        loss, _ = model.loss(model(images), masks)
        loss.backward()
        statistics = [b for m in model.modules() if isinstance(m, nn.BatchNorm2d) for b in (m.running_mean, m.running_var)]
        return loss.item(), [p.grad for p in model.parameters()], statistics

    fused = []
    for name in ("batch_norm_relu_conv2d_training", "batch_norm_relu_conv_transpose2d_training"):
        original = getattr(mm.model, name)
        monkeypatch.setattr(mm.model, name, lambda *args, _name=name, _original=original: fused.append((_name, args[-3] is not None))
                            or _original(*args))
    loss, grads, statistics = step()
    assert [name for name, _ in fused].count("batch_norm_relu_conv2d_training") == 58
    assert [name for name, _ in fused].count("batch_norm_relu_conv_transpose2d_training") == 11
    assert sum(residual for _, residual in fused) == 22

    def three_ops_and_an_add(self, x, residual=None):
        y = nn.Sequential.forward(self, x)
        return y if residual is None else y + residual
    monkeypatch.setattr(mm.model.PreActivation, "forward", three_ops_and_an_add)
    expected_loss, expected_grads, expected_statistics = step()
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    # A convolution bias right before a batch norm has a gradient of 0 but for rounding noise.
    floor = 1e-9 * max(np.abs(mm.backend.to_numpy(g)).max() for g in expected_grads)
    for got, want in zip(grads + statistics, expected_grads + expected_statistics):
        np.testing.assert_allclose(mm.backend.to_numpy(got), mm.backend.to_numpy(want), rtol=1e-8, atol=floor)


def test_saliency_maps_lie_in_unit_interval_and_restore_training_mode():
    config = small_config()
    model = MEnet(config)
    images, _ = random_batch(config)
    maps = model.saliency_maps(images.data)
    assert model.training
    for m in maps.values():
        m = mm.backend.to_numpy(m)
        assert m.shape == (2, 32, 32) and m.min() >= 0 and m.max() <= 1
