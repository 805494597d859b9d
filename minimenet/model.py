"""MEnet: the Metric Expression Network (Cai et al.), top to bottom as in the paper's Figure 2.

The paper's figures are missing; this is the architecture fixed from its text. Each part names
the sentence it implements.

    image S x S x 3 ──────────────────────────────────────────────────────────────┐ scale map 0
    encoder 0   3x3/2 conv, 3 more 3x3 convs      c0 @ S/2   ───────────────────────┤ scale map 1
    encoder 1                                     c1 @ S/4   ───────────────────────┤ ...
    encoder 2                                     c2 @ S/8                          │
    encoder 3                                     c3 @ S/16                         │
    encoder 4                                     c4 @ S/32                         │
    encoder 5   kxk conv (k = S/32, no pad), 3 more    c5 @ 1x1 ───────────────────┤ scale map 6
    decoder 5   3 convs, kxk/1 deconv             c4 @ S/32  ───────────────────────┤ scale map 7
    decoder 4   [dec5, enc4] 3 convs, 4x4/2 deconv  c3 @ S/16                       │
    decoder 3   [dec4, enc3] ...                  c2 @ S/8                          │
    decoder 2   [dec3, enc2]                      c1 @ S/4                          │
    decoder 1   [dec2, enc1]                      c0 @ S/2                          │
    decoder 0   [dec1, enc0] 3 convs, 4x4/2 deconv  c0 @ S   ───────────────────────┘ scale map 12
    13 scale maps: each a 3x3 conv to 1 channel + bilinear resize to S x S, concatenated
    feature map f: 3x3 conv, 16 kernels              16 @ S
      ├─ CE head: 1x1 conv to 2 logits  -> softmax cross entropy with hard negative mining (Eq. 1)
      └─ metric head: f / ||f||         -> centroid metric loss (Eq. 3)
    L = L*_ML + lambda L_CE (Eq. 4), lambda = 1

Widths c_i = min(w 2^i, max_width). Every convolution and deconvolution is followed by batch
norm and ReLU, except the 13 scale-map convolutions (bias, nothing after) and the CE head.
With L = 4 layers per block the encoder and decoder hold 48 layers (6 blocks of 4 convolutions,
6 blocks of 3 convolutions and a deconvolution); the longest path adds a scale-map convolution,
the 16-kernel convolution and the CE head. The paper counts 52 layers in all; without its
figures the remaining layers cannot be placed, so we count nothing beyond what the text says.
"""
from dataclasses import asdict, dataclass, replace

from . import nn
from .backend import array_module
from .losses import metric_loss, softmax_cross_entropy
from .norm import l2_normalize
from .resize import resize
from .tensor import Tensor, concat, no_grad

VARIANTS = ("menet", "ce-only", "ce-plain")


@dataclass(frozen=True)
class MEnetConfig:
    image_size: int = 64          # S, a multiple of 32
    width: int = 8                # w: channels of the first block
    max_width: int = 64           # cap on the channels of the deeper blocks
    layers_per_block: int = 4     # L ("a 4 convolutional layer block")
    feature_dim: int = 16         # "convolution operation with 16 kernels"
    variant: str = "menet"        # Table III: "menet", "ce-only" (no metric loss), "ce-plain" (no multi-scale)
    ce_weight: float = 1.0        # lambda of Eq. 4
    hard_negative_mining: bool = True
    normalize_eps: float = 1e-12  # epsilon of the L2 normalisation before the metric loss
    dtype: str = "float32"

    PRESETS = {
        "paper": dict(image_size=224, width=32, max_width=512),
        "tiny": dict(image_size=64, width=8, max_width=64),
    }

    @classmethod
    def preset(cls, name, **overrides):
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def __post_init__(self):
        if self.image_size % 32 or self.image_size < 32:
            raise ValueError(f"MEnetConfig: image_size must be a positive multiple of 32 (five stride-2 blocks), got {self.image_size}")
        if self.variant not in VARIANTS:
            raise ValueError(f"MEnetConfig: variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.layers_per_block < 2:
            raise ValueError("MEnetConfig: layers_per_block must be at least 2 (a block needs its resampling layer and one more)")

    @property
    def widths(self):
        return [min(self.width * 2 ** i, self.max_width) for i in range(6)]

    def to_dict(self):
        return asdict(self)

    def replace(self, **changes):
        return replace(self, **changes)


def conv_bn_relu(in_channels, out_channels, kernel_size=3, stride=1, padding=1, dtype="float32"):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype),
                         nn.BatchNorm2d(out_channels, dtype=dtype), nn.ReLU())


def deconv_bn_relu(in_channels, out_channels, kernel_size, stride, padding, dtype="float32"):
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype),
                         nn.BatchNorm2d(out_channels, dtype=dtype), nn.ReLU())


class Output:
    """What the network computes for a batch: CE logits (B, 2, S, S) and the feature map f
    (B, 16, S, S) before normalisation (None for ce-plain)."""

    def __init__(self, logits, features):
        self.logits, self.features = logits, features


class MEnet(nn.Module):
    def __init__(self, config=MEnetConfig()):
        self.config = config
        c, L, dt = config.widths, config.layers_per_block, config.dtype
        k = config.image_size // 32

        # "at each down-sampling step we double the number of feature channels using a
        # convolution with stride 2"; block 5 compresses "all feature information into feature
        # maps whose size are 1x1".
        self.encoder = []
        for i in range(6):
            c_in = 3 if i == 0 else c[i - 1]
            first = conv_bn_relu(c_in, c[i], 3, 2, 1, dt) if i < 5 else conv_bn_relu(c_in, c[i], k, 1, 0, dt)
            self.encoder.append(nn.Sequential(first, *[conv_bn_relu(c[i], c[i], dtype=dt) for _ in range(L - 1)]))

        # "each step in the decoder path consists of an upsampling of the feature map by a
        # deconvolution after being concatenated the input with the short connection".
        self.decoder = []
        for i in reversed(range(6)):
            c_in = c[5] if i == 5 else 2 * c[i]
            c_out = c[max(i - 1, 0)]
            up = deconv_bn_relu(c[i], c_out, k, 1, 0, dt) if i == 5 else deconv_bn_relu(c[i], c_out, 4, 2, 1, dt)
            convs = [conv_bn_relu(c_in if j == 0 else c[i], c[i], dtype=dt) for j in range(L - 1)]
            self.decoder.append(nn.Sequential(*convs, up))

        if config.variant == "ce-plain":
            # Table III's CE-plain: "does not utilize multi-scale information".
            self.ce_head = nn.Conv2d(c[0], 2, 1, dtype=dt)
            return
        # "each scale generates one output feature map of the same size via a single
        # convolution and up-sampling; while the first feature map is simply obtained from
        # convolving the original image across its RGB channels".
        scale_channels = [3] + c + [c[4], c[3], c[2], c[1], c[0], c[0]]
        self.scale_convs = [nn.Conv2d(ch, 1, 3, 1, 1, dtype=dt) for ch in scale_channels]
        # "we further use convolution operation with 16 kernels to generate the final feature map".
        self.feature_conv = conv_bn_relu(len(scale_channels), config.feature_dim, dtype=dt)
        # "we generate P(l = y) via a convolution with 2 kernels from feature extraction part".
        self.ce_head = nn.Conv2d(config.feature_dim, 2, 1, dtype=dt)

    def forward(self, images):
        """images: Tensor (B, 3, S, S), normalised as in data.normalize."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise ValueError(f"MEnet: expected images of shape (batch, 3, {size}, {size}) for this configuration, got {images.shape}")
        scales = [images]
        skips = []
        x = images
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        scales += skips
        for i, block in zip(reversed(range(6)), self.decoder):
            x = block(x if i == 5 else concat([x, skips[i]], axis=1))
            scales.append(x)
        if self.config.variant == "ce-plain":
            return Output(self.ce_head(x), None)
        maps = [resize(conv(s), (size, size)) for conv, s in zip(self.scale_convs, scales)]
        features = self.feature_conv(concat(maps, axis=1))
        return Output(self.ce_head(features), features)

    def loss(self, out, masks):
        """Eq. 4: L = L*_ML + lambda L_CE. Returns the total and its terms as floats."""
        cfg = self.config
        ce = softmax_cross_entropy(out.logits, masks, cfg.hard_negative_mining)
        if cfg.variant != "menet":
            return ce, {"ce": ce.item()}
        ml = metric_loss(l2_normalize(out.features, cfg.normalize_eps), masks)
        return ml + ce * cfg.ce_weight, {"metric": ml.item(), "ce": ce.item()}

    def saliency_maps(self, images):
        """Inference: (metric map, CE map), each (B, S, S) in [0, 1]; see ``metric_saliency``.

        The metric map is None for ce-plain and ce-only, whose features are not trained for it.
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
        p_salient = 0.5 * (1.0 + xp.tanh(0.5 * (z[:, 1] - z[:, 0])))  # softmax of two logits, without overflow
        if self.config.variant != "menet":
            return None, p_salient
        features = l2_normalize(out.features, self.config.normalize_eps).data
        return metric_saliency(features, p_salient), p_salient


def metric_saliency(features, p_salient):
    """Eq. 5: S_i = ||f^_i - E_{f_j ~ P_B} f^_j|| on the normalised features f^.

    Omega_B is the set of pixels the CE head calls background (p_salient < 0.5), and P_B is
    uniform on it. If the CE head calls every pixel salient, Omega_B is empty; we then take the
    soft version of the same expectation, P_B(j) proportional to 1 - p_salient(j) over all
    pixels. Each map is divided by its maximum so it spans [0, 1] (a map that is zero
    everywhere stays zero).

    features (B, C, H, W), p_salient (B, H, W) -> (B, H, W).
    """
    xp = array_module(features)
    background = (p_salient < 0.5).astype(features.dtype)
    empty = background.sum(axis=(1, 2)) == 0
    weights = xp.where(empty[:, None, None], 1.0 - p_salient, background)
    weights = weights / weights.sum(axis=(1, 2), keepdims=True)
    centre = (features * weights[:, None]).sum(axis=(2, 3), keepdims=True)
    distance = xp.sqrt(((features - centre) ** 2).sum(axis=1))
    peak = distance.max(axis=(1, 2), keepdims=True)
    return xp.where(peak > 0, distance / xp.where(peak > 0, peak, 1), 0).astype(features.dtype)
