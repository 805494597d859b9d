"""MEnet: the Metric Expression Network (Cai et al.), as the authors built it.

The paper's Figures 2 and 3 are missing from its text; this is the network of the authors'
released Caffe definition (``shared/reference/authors-menet.md``), top to bottom:

    image S x S x 3 (raw 0-255 RGB) ─────────────────────────────────────────────┐ scale map 0
    stem      conv 3x3 -> BN -> ReLU, 2 residual units           e0  c0 @ S     ──┤ scale map 1
    down 1..5 [BRC 3x3/2, BRC 3x3] + BRC 1x1/2 shortcut, 1 unit  e1..e5 @ S/2..S/32 ┤ maps 2-6
    squeeze   BRC k x k valid (k = S/32)                             c5 @ 1 x 1    │
    expand    BRD k x k                                          d5  c5 @ S/32  ──┤ scale map 12
    up 4..0   on [previous, e_{j+1}]: [BRD 4x4/2, BRC 3x3]                         │
              + BRD 2x2/2 shortcut, 1 unit                       g4..g0 @ S/16..S ┤ maps 7-11
    13 scale maps: BRC 3x3 to 1 channel, nearest-neighbour upsampled to S x S, concatenated
      ├─ feature head: f = tanh(BN(conv 3x3, 13 -> 16))   -> metric loss (Eq. 3), on f / ||f||:
      │                the loss normalises f itself, as the authors' loss layer does, because
      │                their gradient passes the normalisation straight through (losses.py)
      └─ CE head:      z = BN(conv 3x3, 13 -> 2)          -> softmax cross entropy (Eq. 1)
    L = L*_ML + lambda L_CE (Eq. 4), lambda = 1

BRC = batch norm -> ReLU -> convolution (with bias); BRD the same with a transposed convolution
(no bias); a residual unit is x + BRC(BRC(x)), pre-activation style. Widths c_i = w 2^i.
The paper's "4 convolutional layer block" is each level's four 3 x 3 convolutions (two in the
resampling pair, two in the residual unit). Scale maps are taken in the order image, e0..e5,
g0..g4, d5 (the authors' concatenation order).
"""
from dataclasses import asdict, dataclass, replace

import numpy

from . import nn
from .backend import array_module, to_numpy
from .fused import (batch_norm_relu_conv2d, batch_norm_relu_conv2d_training, batch_norm_relu_conv_transpose2d,
                    batch_norm_relu_conv_transpose2d_training)
from .losses import METRIC_GRADIENTS, metric_loss, softmax_cross_entropy
from .norm import l2_normalize
from .resize import upsample_nearest
from .tensor import Tensor, concat, grad_enabled, no_grad, relu, tanh

VARIANTS = ("menet", "ce-only", "ce-plain")
BACKGROUND_ESTIMATES = ("authors", "paper")


@dataclass(frozen=True)
class MEnetConfig:
    image_size: int                   # S, a multiple of 32 (the presets' are in minimenet/config.py)
    width: int                        # w: channels of the stem; level i has w 2^i
    feature_dim: int = 16             # "convolution operation with 16 kernels"
    variant: str = "menet"            # Table III: "menet", "ce-only" (no metric loss), "ce-plain" (no scale maps)
    ce_weight: float = 1.0            # lambda of Eq. 4
    metric_gradient: str = "authors"  # "authors" (their layer's) or "exact" (of Eq. 3); see losses.metric_loss
    background: str = "authors"       # Eq. 5's background centroid: see ``metric_saliency``
    dtype: str = "float32"

    def __post_init__(self):
        if self.image_size % 32 or self.image_size < 32:
            raise ValueError(f"MEnetConfig: image_size must be a positive multiple of 32 (five stride-2 levels), got {self.image_size}")
        if self.width < 1:
            raise ValueError(f"MEnetConfig: width must be at least 1, got {self.width}")
        for field, allowed in (("variant", VARIANTS), ("metric_gradient", METRIC_GRADIENTS),
                               ("background", BACKGROUND_ESTIMATES)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"MEnetConfig: {field} must be one of {allowed}, got {getattr(self, field)!r}")

    @property
    def widths(self):
        return [self.width * 2 ** i for i in range(6)]

    def to_dict(self):
        return asdict(self)

    def replace(self, **changes):
        return replace(self, **changes)


class PreActivation(nn.Sequential):
    """Batch norm -> ReLU -> a convolution, plus ``residual`` when given (a residual unit's or a
    level's sum). In training and at inference (eval mode, no graph) they run as one op
    (``minimenet.fused``), which never writes the batch norm's or the ReLU's output, and the sum
    joins it likewise; in eval mode with a graph, as the three ops and an add."""

    def forward(self, x, residual=None):
        norm, _, conv = self.layers
        if self.training:
            return self.fused_training(x, norm, conv, residual)
        if not grad_enabled():
            return self.fused(x, *norm.eval_affine(x.dtype), conv, residual)
        y = super().forward(x)
        return y if residual is None else y + residual


class BRC(PreActivation):
    """Batch norm -> ReLU -> convolution (with bias)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dtype="float32"):
        super().__init__(nn.BatchNorm2d(in_channels, dtype=dtype), nn.ReLU(),
                         nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dtype=dtype))

    @staticmethod
    def fused(x, scale, shift, conv, residual):
        return batch_norm_relu_conv2d(x, scale, shift, conv.weight, conv.bias, conv.stride, conv.padding, residual)

    @staticmethod
    def fused_training(x, norm, conv, residual):
        return batch_norm_relu_conv2d_training(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, conv.weight,
                                               conv.bias, conv.stride, conv.padding, residual, norm.momentum, norm.eps)


class BRD(PreActivation):
    """Batch norm -> ReLU -> transposed convolution (no bias)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dtype="float32"):
        super().__init__(nn.BatchNorm2d(in_channels, dtype=dtype), nn.ReLU(),
                         nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype))

    @staticmethod
    def fused(x, scale, shift, deconv, residual):
        return batch_norm_relu_conv_transpose2d(x, scale, shift, deconv.weight, deconv.stride, deconv.padding,
                                                deconv.output_padding, residual)

    @staticmethod
    def fused_training(x, norm, deconv, residual):
        return batch_norm_relu_conv_transpose2d_training(x, norm.weight, norm.bias, norm.running_mean, norm.running_var,
                                                         deconv.weight, deconv.stride, deconv.padding, deconv.output_padding,
                                                         residual, norm.momentum, norm.eps)


class ResidualUnit(nn.Module):
    """x + BRC(BRC(x)), both 3 x 3."""

    def __init__(self, channels, dtype="float32"):
        self.body = nn.Sequential(BRC(channels, channels, 3, 1, 1, dtype), BRC(channels, channels, 3, 1, 1, dtype))

    def forward(self, x):
        first, second = self.body.layers
        return second(first(x), residual=x)


class Stem(nn.Module):
    """Level 0 at S x S: conv 3x3 -> BN -> ReLU, then two residual units."""

    def __init__(self, channels, dtype="float32"):
        self.conv = nn.Conv2d(3, channels, 3, 1, 1, dtype=dtype)
        self.bn = nn.BatchNorm2d(channels, dtype=dtype)
        self.units = [ResidualUnit(channels, dtype), ResidualUnit(channels, dtype)]

    def forward(self, x):
        x = relu(self.bn(self.conv(x)))
        for unit in self.units:
            x = unit(x)
        return x


class Resample(nn.Module):
    """One down or up level: a main path and a projection shortcut, summed, then a residual unit.

    down: main BRC 3x3/2 then BRC 3x3, shortcut BRC 1x1/2 (halves the size).
    up:   main BRD 4x4/2 then BRC 3x3, shortcut BRD 2x2/2 (doubles it).
    """

    def __init__(self, direction, in_channels, out_channels, dtype="float32"):
        if direction == "down":
            first, shortcut = BRC(in_channels, out_channels, 3, 2, 1, dtype), BRC(in_channels, out_channels, 1, 2, 0, dtype)
        else:
            first, shortcut = BRD(in_channels, out_channels, 4, 2, 1, dtype), BRD(in_channels, out_channels, 2, 2, 0, dtype)
        self.main = nn.Sequential(first, BRC(out_channels, out_channels, 3, 1, 1, dtype))
        self.shortcut = shortcut
        self.unit = ResidualUnit(out_channels, dtype)

    def forward(self, x):
        return self.unit(self.shortcut(x, residual=self.main(x)))


class Output:
    """What the network computes for a batch: CE logits z (B, 2, S, S), the features
    f = tanh(...) (B, 16, S, S) before L2 normalisation (None for ce-only and ce-plain), and the
    13 upsampled scale maps (B, 13, S, S) (None for ce-plain)."""

    def __init__(self, logits, features, scale_maps):
        self.logits, self.features, self.scale_maps = logits, features, scale_maps


class MEnet(nn.Module):
    def __init__(self, config):
        self.config = config
        c, dt = config.widths, config.dtype
        k = config.image_size // 32

        # Attributes in the order the forward pass uses them, so that parameters() is too.
        self.stem = Stem(c[0], dt)
        self.down = [Resample("down", c[i - 1], c[i], dt) for i in range(1, 6)]
        # "compress all feature information into feature maps whose size are 1 x 1"
        self.squeeze = BRC(c[5], c[5], k, 1, 0, dt)
        self.expand = BRD(c[5], c[5], k, 1, 0, dt)
        self.up = [Resample("up", 2 * c[j + 1], c[j], dt) for j in reversed(range(5))]

        if config.variant == "ce-plain":
            # Table III's CE-plain: "does not utilize multi-scale information".
            self.ce_head = nn.Sequential(nn.Conv2d(c[0], 2, 3, 1, 1, dtype=dt), nn.BatchNorm2d(2, dtype=dt))
            return
        # "each scale generates one output feature map of the same size via a single
        # convolution and up-sampling; while the first feature map is simply obtained from
        # convolving the original image across its RGB channels"
        scale_channels = [3] + c + c[:5] + [c[5]]          # image, e0..e5, g0..g4, d5
        self.scale_maps = [BRC(ch, 1, 3, 1, 1, dt) for ch in scale_channels]
        if config.variant == "menet":
            # "we further use convolution operation with 16 kernels to generate the final feature map"
            self.feature_head = nn.Sequential(nn.Conv2d(len(scale_channels), config.feature_dim, 3, 1, 1, dtype=dt),
                                              nn.BatchNorm2d(config.feature_dim, dtype=dt))
        # "we generate P(l = y) via a convolution with 2 kernels from feature extraction part"
        self.ce_head = nn.Sequential(nn.Conv2d(len(scale_channels), 2, 3, 1, 1, dtype=dt), nn.BatchNorm2d(2, dtype=dt))

    def forward(self, images):
        """images: Tensor (B, 3, S, S), raw 0-255 RGB as ``data.normalize`` gives them."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise ValueError(f"MEnet: expected images of shape (batch, 3, {size}, {size}) for this configuration, got {images.shape}")
        encoded = [self.stem(images)]                                   # e0
        for level in self.down:
            encoded.append(level(encoded[-1]))                          # e1..e5
        d5 = self.expand(self.squeeze(encoded[-1]))
        decoded, x = [], d5
        for level, skip in zip(self.up, reversed(encoded[1:])):
            x = level(concat([x, skip], axis=1))                        # g4..g0
            decoded.append(x)
        if self.config.variant == "ce-plain":
            return Output(self.ce_head(x), None, None)
        sources = [images] + encoded + decoded[::-1] + [d5]
        maps = concat([upsample_nearest(scale_map(s), size // s.shape[2]) for scale_map, s in zip(self.scale_maps, sources)], axis=1)
        features = tanh(self.feature_head(maps)) if self.config.variant == "menet" else None
        return Output(self.ce_head(maps), features, maps)

    def loss(self, out, masks):
        """Eq. 4: L = L*_ML + lambda L_CE. Returns the total and its terms as floats."""
        cfg = self.config
        ce = softmax_cross_entropy(out.logits, masks)
        if cfg.variant != "menet":
            return ce, {"ce": ce.item()}
        ml = metric_loss(out.features, masks, cfg.metric_gradient)
        return ml + ce * cfg.ce_weight, {"metric": ml.item(), "ce": ce.item()}

    def learning_rate_multipliers(self):
        """(lr multiplier, weight-decay multiplier) per parameter, in ``parameters()`` order, as
        the authors' solver sets them: convolution biases learn at twice the rate and without
        weight decay; everything else (weights, batch-norm scales and shifts) at 1 and 1."""
        conv_biases = {id(m.bias) for m in self.modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
        return [(2.0, 0.0) if id(p) in conv_biases else (1.0, 1.0) for p in self.parameters()]

    def saliency_maps(self, images):
        """Inference: {"metric": ..., "metric_<other reading>": ..., "ce": ...}, each (B, S, S) in [0, 1].

        "ce" is the softmax probability of the salient class. "metric" is Eq. 5
        (``metric_saliency``) with the configuration's ``background`` reading, and the other
        reading is given beside it, e.g. "metric_paper", so that both can be scored. The
        ablation variants, whose features are not trained for Eq. 5, have only "ce".
        """
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                out = self(images if isinstance(images, Tensor) else Tensor(images))
        finally:
            self.train(was_training)
        xp = out.logits.xp
        z = out.logits.data
        maps = {"ce": 0.5 * (1.0 + xp.tanh(0.5 * (z[:, 1] - z[:, 0])))}  # softmax of two logits, without overflow
        if out.features is not None:
            y = l2_normalize(out.features, 0.0).data
            for reading in BACKGROUND_ESTIMATES:
                name = "metric" if reading == self.config.background else f"metric_{reading}"
                maps[name] = metric_saliency(y, maps["ce"], reading)
        return maps


# --- Eq. 5 ---------------------------------------------------------------------------------------

BORDER_BAND_AT_224 = 20     # the authors' band of border pixels, in pixels of a 224 x 224 input
BORDER_SAMPLES = 100        # at most this many band pixels estimate the background
BORDER_SEED = 0             # their sample is random; ours is fixed so a map is reproducible
FALLBACK_FRACTION = 0.1     # paper reading with no pixel called background: the least salient 10 %


def metric_saliency(features, p_salient, background="authors"):
    """Eq. 5: the distance of each unit feature y_i to the background centroid E_{j ~ P_B} y_j,
    min-max scaled to [0, 1] per image (a constant map becomes 0).

    ``background`` says how Omega_B and P_B are read:
    - "paper": the text. Omega_B = the pixels the CE head calls background (p_salient < 0.5),
      P_B uniform on it, S_i = ||y_i - mean||. With no such pixel (the CE head calls the whole
      image salient), the least salient ``FALLBACK_FRACTION`` of the pixels stand in for it.
    - "authors": their test code. Up to ``BORDER_SAMPLES`` pixels drawn (fixed seed) from the
      band of width 20 S / 224 along the border where p_salient < 0.5 (the whole band if none
      is), split greedily into two clusters (each pixel joins the cluster whose running mean is
      nearer; the second cluster opens when a pixel is farther than 2, squared, from the first);
      the larger cluster's mean is the centroid, and S_i = ||y_i - centroid||^2.

    features (B, C, H, W) unit vectors, p_salient (B, H, W) -> (B, H, W).
    """
    if background not in BACKGROUND_ESTIMATES:
        raise ValueError(f"metric_saliency: background must be one of {BACKGROUND_ESTIMATES}, got {background!r}")
    xp = array_module(features)
    estimate = _border_centroid if background == "authors" else _background_mean
    centres = xp.stack([estimate(f, p) for f, p in zip(features, p_salient)])      # (B, C)
    distance = ((features - centres[:, :, None, None]) ** 2).sum(axis=1)
    if background == "paper":
        distance = xp.sqrt(distance)
    low = distance.min(axis=(1, 2), keepdims=True)
    span = distance.max(axis=(1, 2), keepdims=True) - low
    return xp.where(span > 0, (distance - low) / xp.where(span > 0, span, 1), 0).astype(features.dtype)


def _background_mean(features, p_salient):
    xp = array_module(features)
    background = p_salient < 0.5
    if not bool(background.any()):
        flat = p_salient.reshape(-1)
        count = max(1, int(FALLBACK_FRACTION * flat.size))
        background = xp.zeros(flat.size, dtype=bool)
        background[xp.argsort(flat)[:count]] = True
        background = background.reshape(p_salient.shape)
    return features[:, background].mean(axis=1)


def _border_centroid(features, p_salient):
    height, width = p_salient.shape
    band = max(1, round(BORDER_BAND_AT_224 * height / 224))
    in_band = numpy.ones((height, width), dtype=bool)
    in_band[band:height - band, band:width - band] = False
    candidates = numpy.flatnonzero(in_band & (to_numpy(p_salient) < 0.5))
    if candidates.size == 0:
        candidates = numpy.flatnonzero(in_band)
    picked = numpy.random.default_rng(BORDER_SEED).choice(candidates, min(BORDER_SAMPLES, candidates.size), replace=False)
    samples = to_numpy(features.reshape(features.shape[0], -1)[:, array_module(features).asarray(picked)]).T  # (n, C)
    # Greedy split in the authors' order; a few hundred tiny vector operations, so on the host.
    sums, counts = [samples[0].copy(), numpy.zeros_like(samples[0])], [1, 0]
    for y in samples[1:]:
        to_first = ((y - sums[0] / counts[0]) ** 2).sum()
        to_second = ((y - sums[1] / counts[1]) ** 2).sum() if counts[1] else 2.0
        k = 1 if to_first > to_second else 0
        sums[k] += y
        counts[k] += 1
    k = 0 if counts[0] >= counts[1] else 1
    return array_module(features).asarray(sums[k] / counts[k])
