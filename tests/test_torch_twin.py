"""minimenet's MEnet against an independent PyTorch twin (benchmarks/torch_menet.py), level by
level, in float64: every level's output, the 13 upsampled scale maps, features, logits, the loss,
every parameter gradient (with the authors' metric gradient and with the exact one; and with
Winograd on every 3 x 3 stride-1 layer, which this small network's are otherwise too small
for), the BN running statistics after the step, and the Eq. 5 maps. Skips where torch is not
installed."""
import os
import sys

import numpy
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import torch_menet  # noqa: E402

from minimenet import backend, nn, no_grad, winograd  # noqa: E402
from minimenet.conv_geometry import pair  # noqa: E402
from minimenet.model import MEnet, MEnetConfig  # noqa: E402
from minimenet.resize import upsample_nearest  # noqa: E402
from minimenet.tensor import Tensor, concat, tanh  # noqa: E402

RTOL = 1e-10        # outputs, loss values, running statistics
GRAD_RTOL = 1e-9    # parameter gradients (observed: up to 2e-11)
MAP_NAMES = ["image"] + [f"e{i}" for i in range(6)] + [f"g{j}" for j in range(5)] + ["d5"]


def relative_error(a, b):
    """max |a - b| / max |b| (the reference's scale), 0 for two zero arrays."""
    a, b = numpy.asarray(a), numpy.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = numpy.abs(b).max()
    return float(numpy.abs(a - b).max() / scale) if scale > 0 else float(numpy.abs(a).max())


def batch(size, count=3, seed=0):
    """Raw 0-255 images and masks: two ellipses of different sizes and one all-background image."""
    rng = numpy.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 3, size, size)).astype(numpy.float64)
    yy, xx = numpy.mgrid[0:size, 0:size] + 0.5
    masks = numpy.zeros((count, size, size), numpy.int64)
    for b, (fy, fx) in enumerate([(0.2, 0.3), (0.4, 0.35)][:count - 1]):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        masks[b] = ((yy - cy) / (fy * size)) ** 2 + ((xx - cx) / (fx * size)) ** 2 <= 1
    return images, masks


def minimenet_levels(model, x):
    """minimenet's intermediate outputs, composed from its submodules as its forward does."""
    out = {"e0": model.stem(x)}
    for i, level in enumerate(model.down, start=1):
        out[f"e{i}"] = level(out[f"e{i - 1}"])
    out["bottleneck"] = model.squeeze(out["e5"])
    out["d5"] = model.expand(out["bottleneck"])
    prev = out["d5"]
    for j, level in zip((4, 3, 2, 1, 0), model.up):
        prev = out[f"g{j}"] = level(concat([prev, out[f"e{j + 1}"]], axis=1))
    size = model.config.image_size
    sources = [x] + [out[f"e{i}"] for i in range(6)] + [out[f"g{j}"] for j in range(5)] + [out["d5"]]
    ups = [upsample_nearest(conv(s), size // s.shape[2]) for conv, s in zip(model.scale_maps, sources)]
    for name, u in zip(MAP_NAMES, ups):
        out[f"map_{name}"] = u
    maps = concat(ups, axis=1)
    out["features"] = tanh(model.feature_head(maps))
    out["logits"] = model.ce_head(maps)
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def setup():
    if backend.device != "cpu":
        pytest.skip("the twin comparison runs on the CPU backend")
    config = MEnetConfig(image_size=64, width=2, dtype="float64")
    nn.manual_seed(3)
    model = MEnet(config)
    # Give the BN affine parameters and biases non-trivial values so that their paths are tested.
    rng = numpy.random.default_rng(7)
    for p in model.parameters():
        if p.data.ndim == 1:
            p.data[...] = (1.0 if numpy.all(p.data == 1) else 0.0) + 0.2 * rng.standard_normal(p.data.shape)
    twin = torch_menet.copy_from_minimenet(torch_menet.from_config(config), model)
    images, masks = batch(config.image_size)
    return config, model, twin, images, masks


def test_parameter_order_and_count(setup):
    config, model, twin, _, _ = setup
    assert [tuple(p.shape) for p in model.parameters()] == [tuple(p.shape) for p in twin.parameters()]
    assert model.num_parameters() == torch_menet.count_parameters(twin)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert numpy.array_equal(a.numpy(), b.detach().numpy())


def test_paper_preset_size():
    """The authors' network: 72 conv/deconv layers, 72 BNs, 184 959 166 parameters."""
    with torch.device("meta"):                         # shapes only, no memory
        twin = torch_menet.build("paper")
    assert torch_menet.count_parameters(twin) == 184_959_166
    assert sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in twin.modules()) == 72
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in twin.modules()) == 72


def test_levels_match(setup):
    config, model, twin, images, masks = setup
    state = model.state_dict()
    with no_grad():
        ours = minimenet_levels(model, Tensor(images))
    model.load_state_dict(state)                       # undo the running-statistic update
    twin.train()
    with torch.no_grad():
        theirs = twin(torch.from_numpy(images), levels=True)
    twin_levels = dict(theirs.levels, features=theirs.features, logits=theirs.logits)
    torch_menet.copy_from_minimenet(twin, model)       # and the twin's
    names = ([f"e{i}" for i in range(6)] + ["bottleneck", "d5"] + [f"g{j}" for j in (4, 3, 2, 1, 0)]
             + [f"map_{n}" for n in MAP_NAMES] + ["features", "logits"])
    errors = {name: relative_error(ours[name], twin_levels[name].numpy()) for name in names}
    bad = {k: v for k, v in errors.items() if not v < RTOL}
    assert not bad, f"levels differ (relative error): {bad}"


@pytest.mark.parametrize("gradient, by_winograd", [("authors", False), ("exact", False), ("authors", True)])
def test_loss_and_gradients_match(setup, gradient, by_winograd, monkeypatch):
    config, model, twin, images, masks = setup
    winograd_layers = []
    if by_winograd:  # every 3 x 3 stride-1 layer's forward and both gradients by F(4 x 4, 3 x 3)
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
        monkeypatch.setattr(winograd, "MIN_SIZE", 1)
        original = winograd.weight_grad
        monkeypatch.setattr(winograd, "weight_grad", lambda *args: winograd_layers.append(args[2].w_shape) or original(*args))
    state = model.state_dict()
    model.config = config.replace(metric_gradient=gradient)
    try:
        for p in model.parameters():
            p.grad = None
        out = model(Tensor(images))
        loss, parts = model.loss(out, masks)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        mm_stats = [numpy.concatenate([m.running_mean, m.running_var]) for m in model.modules()
                    if isinstance(m, nn.BatchNorm2d)]
    finally:
        model.config = config
        model.load_state_dict(state)

    twin.train()
    twin.zero_grad(set_to_none=True)
    t_out = twin(torch.from_numpy(images))
    t_loss, t_parts = twin.loss(t_out, torch.from_numpy(masks), metric_gradient=gradient)
    t_loss.backward()
    t_stats = [torch.cat([m.running_mean, m.running_var]).numpy() for m in twin.modules()
               if isinstance(m, torch.nn.BatchNorm2d)]
    torch_menet.copy_from_minimenet(twin, model)

    three_by_three = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[2:] == (3, 3)
                      and pair(m.stride, "stride", "test") == pair(m.padding, "padding", "test") == (1, 1)]
    assert len(winograd_layers) == (len(three_by_three) if by_winograd else 0)
    assert abs(parts["ce"] - float(t_parts["ce"])) <= RTOL * abs(float(t_parts["ce"]))
    assert abs(parts["metric"] - float(t_parts["metric"])) <= RTOL * abs(float(t_parts["metric"]))
    assert abs(loss.item() - t_loss.item()) <= RTOL * abs(t_loss.item())
    assert relative_error(out.logits.numpy(), t_out.logits.detach().numpy()) < RTOL
    # Every convolution except the 13 scale maps' feeds only batch norms (training statistics),
    # directly or through residual sums, so the true gradient of its bias is zero: both sides
    # must give round-off, far below the gradients' scale. (A scale map's bias reaches a BN
    # through the zero-padded 3x3 head convolutions, which do not pass a constant on at the
    # border, so its gradient is not zero.) Every other gradient must agree to float64 precision.
    scale_map_biases = {id(m.layers[2].bias) for m in model.scale_maps}
    conv_biases = {id(m.bias) for m in model.modules()
                   if isinstance(m, nn.Conv2d) and m.bias is not None and id(m.bias) not in scale_map_biases}
    largest = max(float(numpy.abs(g).max()) for g in grads)
    zero, errors = {}, {}
    for (name, p), g, q in zip(model.named_parameters(), grads, twin.parameters()):
        if id(p) in conv_biases:
            zero[name] = max(float(numpy.abs(g).max()), float(q.grad.abs().max())) / largest
        else:
            errors[name] = relative_error(g, q.grad.numpy())
    assert len(zero) == 48 and len(errors) == 277 - 48
    bad = {k: v for k, v in errors.items() if not v < GRAD_RTOL}
    assert not bad, f"{len(bad)} of {len(errors)} gradients differ (largest {max(errors.values()):.1e}): {dict(list(bad.items())[:8])}"
    bad = {k: v for k, v in zero.items() if not v < 1e-12}
    assert not bad, f"convolution-bias gradients not zero (relative to the largest gradient): {dict(list(bad.items())[:8])}"
    stat_errors = [relative_error(a, b) for a, b in zip(mm_stats, t_stats)]
    assert max(stat_errors) < RTOL, max(stat_errors)


def test_metric_loss_alone(setup):
    """The two metric gradients on random features, with mining and an all-background image."""
    from minimenet.losses import metric_loss
    _, _, _, _, masks = setup
    rng = numpy.random.default_rng(5)
    f = rng.standard_normal((masks.shape[0], 16) + masks.shape[1:])
    for gradient in ("authors", "exact"):
        ft = Tensor(f.copy(), requires_grad=True)
        value = metric_loss(ft, masks, gradient)
        value.backward()
        tt = torch.from_numpy(f.copy()).requires_grad_()
        t_value = torch_menet.metric_loss(tt, torch.from_numpy(masks), gradient)
        t_value.backward()
        assert abs(value.item() - t_value.item()) <= RTOL * abs(t_value.item())
        assert relative_error(ft.grad, tt.grad.numpy()) < RTOL, gradient


def test_saliency_maps_match(setup):
    config, model, twin, images, _ = setup
    ours = model.saliency_maps(images)
    theirs = twin.saliency_maps(torch.from_numpy(images))
    assert set(ours) == set(theirs)
    for name in ours:
        assert relative_error(ours[name], theirs[name].numpy()) < 1e-8, name
