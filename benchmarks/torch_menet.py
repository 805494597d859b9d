"""MEnet in PyTorch, for benchmarks only (minimenet itself never imports torch).

It mirrors ``minimenet.model.MEnet`` layer for layer so that parameter counts match:

* widths c_i = min(w 2^i, max_width), i = 0..5; every conv / deconv is followed by BatchNorm +
  ReLU and has no bias, except the 13 scale-map convs (bias, nothing after) and the CE head;
* encoder i = 0..4: 3x3/2 pad-1 conv c_(i-1) -> c_i (c_(-1) = 3), then L-1 3x3 pad-1 convs;
  encoder 5: k x k conv (k = S/32, no pad) c_4 -> c_5 down to 1x1, then L-1 3x3 pad-1 convs;
* decoder i = 5..0: input [previous decoder output, encoder i output] on channels (block 5: encoder
  5 alone); L-1 3x3 convs at c_i; then a deconvolution: k x k stride 1 to c_4 for i = 5, else
  4x4 stride 2 pad 1 to c_(i-1) (c_0 for i = 0);
* 13 scale maps (image, 6 encoder, 6 decoder outputs): 3x3 pad-1 conv to 1 channel (bias), bilinear
  resize (align_corners=False) to S x S; concatenated, then the feature conv: 3x3, 16 kernels,
  either with bias and nothing after (``feature_bn_relu=False``) or no bias + BN + ReLU
  (``feature_bn_relu=True``, what minimenet/model.py does at the time of writing);
* CE head: 1x1 conv (bias) to 2 logits. Loss: centroid metric loss (Eq. 3) on L2-normalised
  features + cross entropy with 1:1 hard negative mining, as in minimenet/losses.py.

    python benchmarks/torch_menet.py     # prints parameter counts of both presets
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(image_size=64, width=8, max_width=64),
    "paper": dict(image_size=224, width=32, max_width=512),
}


def conv_bn_relu(c_in, c_out, k=3, stride=1, padding=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def deconv_bn_relu(c_in, c_out, k, stride, padding):
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, k, stride, padding, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class TorchMEnet(nn.Module):
    def __init__(self, image_size=64, width=8, max_width=64, layers_per_block=4, feature_dim=16,
                 feature_bn_relu=False, normalize_eps=1e-12, ce_weight=1.0):
        super().__init__()
        if image_size % 32 or image_size < 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        self.image_size, self.normalize_eps, self.ce_weight = image_size, normalize_eps, ce_weight
        c = [min(width * 2 ** i, max_width) for i in range(6)]
        L, k = layers_per_block, image_size // 32
        self.widths = c
        self.encoder = nn.ModuleList()
        for i in range(6):
            c_in = 3 if i == 0 else c[i - 1]
            first = conv_bn_relu(c_in, c[i], 3, 2, 1) if i < 5 else conv_bn_relu(c_in, c[i], k, 1, 0)
            self.encoder.append(nn.Sequential(first, *[conv_bn_relu(c[i], c[i]) for _ in range(L - 1)]))
        self.decoder = nn.ModuleList()
        for i in reversed(range(6)):
            c_in = c[5] if i == 5 else 2 * c[i]
            c_out = c[max(i - 1, 0)]
            up = deconv_bn_relu(c[i], c_out, k, 1, 0) if i == 5 else deconv_bn_relu(c[i], c_out, 4, 2, 1)
            convs = [conv_bn_relu(c_in if j == 0 else c[i], c[i]) for j in range(L - 1)]
            self.decoder.append(nn.Sequential(*convs, up))
        scale_channels = [3] + c + [c[4], c[3], c[2], c[1], c[0], c[0]]
        self.scale_convs = nn.ModuleList(nn.Conv2d(ch, 1, 3, 1, 1) for ch in scale_channels)
        if feature_bn_relu:
            self.feature_conv = conv_bn_relu(len(scale_channels), feature_dim)
        else:
            self.feature_conv = nn.Conv2d(len(scale_channels), feature_dim, 3, 1, 1)
        self.ce_head = nn.Conv2d(feature_dim, 2, 1)

    def forward(self, images):
        """images (B, 3, S, S) -> (logits (B, 2, S, S), features (B, 16, S, S) before normalisation)."""
        size = self.image_size
        scales, skips, x = [images], [], images
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        scales += skips
        for i, block in zip(reversed(range(6)), self.decoder):
            x = block(x if i == 5 else torch.cat([x, skips[i]], dim=1))
            scales.append(x)
        maps = [F.interpolate(conv(s), size=(size, size), mode="bilinear", align_corners=False)
                for conv, s in zip(self.scale_convs, scales)]
        features = self.feature_conv(torch.cat(maps, dim=1))
        return self.ce_head(features), features

    def loss(self, logits, features, masks):
        """Eq. 4 with lambda = ce_weight: metric loss on L2-normalised features + mined CE."""
        f = features / torch.sqrt((features * features).sum(dim=1, keepdim=True) + self.normalize_eps)
        ml = metric_loss(f, masks)
        ce = mined_cross_entropy(logits, masks)
        return ml + self.ce_weight * ce, {"metric": ml.detach(), "ce": ce.detach()}

    @torch.no_grad()
    def saliency_maps(self, images):
        """(metric map, CE map), (B, S, S) in [0, 1], as minimenet.model.metric_saliency (Eq. 5)."""
        logits, features = self(images)
        p = torch.sigmoid(logits[:, 1] - logits[:, 0])
        f = features / torch.sqrt((features * features).sum(dim=1, keepdim=True) + self.normalize_eps)
        background = (p < 0.5).to(f.dtype)
        empty = background.sum(dim=(1, 2)) == 0
        weights = torch.where(empty[:, None, None], 1.0 - p, background)
        weights = weights / weights.sum(dim=(1, 2), keepdim=True)
        centre = (f * weights[:, None]).sum(dim=(2, 3), keepdim=True)
        distance = torch.sqrt(((f - centre) ** 2).sum(dim=1))
        peak = distance.amax(dim=(1, 2), keepdim=True)
        return torch.where(peak > 0, distance / peak.clamp_min(1e-30), torch.zeros_like(distance)), p


def metric_loss(f, labels):
    """Eq. 3 literally per pixel, as minimenet.losses.metric_loss_arrays (autograd does the gradient)."""
    b, c = f.shape[:2]
    feats = f.reshape(b, c, -1)
    salient = (labels.reshape(b, 1, -1) == 1).to(f.dtype)
    n_s = salient.sum(dim=2)
    n_b = feats.shape[2] - n_s
    both = ((n_s > 0) & (n_b > 0)).to(f.dtype)
    c_s = (feats * salient).sum(dim=2) / n_s.clamp_min(1)
    c_b = (feats * (1 - salient)).sum(dim=2) / n_b.clamp_min(1)
    own = torch.where(salient > 0, c_s[:, :, None], c_b[:, :, None])
    other = torch.where(salient > 0, c_b[:, :, None], c_s[:, :, None])
    terms = ((feats - own) ** 2).sum(dim=1) - ((feats - other) ** 2).sum(dim=1)
    return (terms * both).sum() / (feats.shape[0] * feats.shape[2])


def hard_negative_mask(pixel_loss, labels):
    """Per image: all minority-class pixels + as many highest-loss majority pixels (1:1)."""
    salient = labels == 1
    n_salient = salient.sum(dim=1)
    n_background = labels.shape[1] - n_salient
    minority = torch.where((n_salient <= n_background)[:, None], salient, ~salient)
    quota = torch.minimum(n_salient, n_background)
    ranked = torch.where(minority, torch.full_like(pixel_loss, -float("inf")), pixel_loss)
    order = torch.argsort(-ranked, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(labels.shape[1], device=labels.device).expand_as(order))
    hardest = rank < quota[:, None]
    return (minority | hardest) & (quota[:, None] > 0)


def mined_cross_entropy(logits, labels):
    """Eq. 1 averaged over the pixels hard negative mining selects in the whole batch."""
    labels = labels.long()
    pixel_loss = F.cross_entropy(logits, labels, reduction="none")
    b = labels.shape[0]
    with torch.no_grad():
        selected = hard_negative_mask(pixel_loss.detach().reshape(b, -1), labels.reshape(b, -1)).reshape(labels.shape)
    count = max(int(selected.sum()), 1)
    return (pixel_loss * selected).sum() / count


def build(preset, **overrides):
    return TorchMEnet(**{**PRESETS[preset], **overrides})


def count_parameters(model):
    """Trainable parameters (BatchNorm's weight and bias included, running statistics not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    for name in PRESETS:
        for flag in (False, True):
            print(f"{name:6s} feature_bn_relu={flag!s:5s}: {count_parameters(build(name, feature_bn_relu=flag)):,} parameters")
