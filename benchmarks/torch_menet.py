"""The authors' MEnet in PyTorch, for the benchmarks and the twin test only (minimenet itself
never imports torch).

Written from ``shared/reference/authors-menet.md`` (the authors' Caffe definition), not from
``minimenet/model.py``; only the parameter *order* is arranged to match minimenet's, so that
weights can be copied across (``copy_from_minimenet``). Notation: S the input size, w the base
width, c_i = w 2^i (i = 0..5, no cap), k = S / 32.

* BRC(cin -> cout, k, s, p) = affine BatchNorm (batch statistics in training) -> ReLU ->
  convolution with bias; BRD the same with a transposed convolution without bias.
* Stem (S x S, c0): conv 3x3 3 -> c0 (bias), BN, ReLU, then two pre-activation residual units
  x + BRC(BRC(x)) (3x3): e0.
* Down i = 1..5: [BRC 3x3/2 pad 1, BRC 3x3] + shortcut BRC 1x1/2, summed, one residual unit: e_i.
* Bottleneck: BRC k x k valid (to 1 x 1), BRD k x k (back to k x k): d5.
* Up j = 4..0 on concat[previous, e_{j+1}]: [BRD 4x4/2 pad 1, BRC 3x3] + shortcut BRD 2x2/2,
  summed, one residual unit: g4 .. g0.
* 13 scale maps BRC(ch -> 1, 3x3) on image, e0..e5, g0..g4, d5, each nearest-neighbour upsampled
  (block copy) to S x S, concatenated (13 channels).
* Feature head f = tanh(BN(conv 3x3 13 -> 16)); CE head z = BN(conv 3x3 13 -> 2).
* Losses (``MEnetTorch.loss``): cross entropy over all pixels, per image sum / (2 H W), summed
  over images; metric loss (Eq. 3) on y = f / ||f|| (no epsilon) with 1:1 hard mining on the
  per-pixel terms, value sum_n sum_{i mined} term_i / (H W), and either the authors' gradient
  m (c_other - c_own) / (C H W) passed straight through to f ("authors", via a surrogate), or
  autograd through the normalisation and the centroids with the mask held fixed ("exact").

Parameters are registered in minimenet's order (forward first use): stem conv, stem BN, the
units (BN then conv each), each down level's main path, shortcut, unit; squeeze; expand; up
levels 4..0; the 13 scale maps; feature head conv + BN; CE head conv + BN.

    python benchmarks/torch_menet.py     # prints parameter counts of both presets
"""
import math

import numpy
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(image_size=64, width=4),
    "paper": dict(image_size=224, width=32),
}
BORDER_BAND_AT_224, BORDER_SAMPLES, BORDER_SEED, FALLBACK_FRACTION = 20, 100, 0, 0.1


class BRC(nn.Module):
    """BN -> ReLU -> conv (bias) or, with ``transposed``, BN -> ReLU -> transposed conv (no bias)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, transposed=False):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(cin, cout, k, stride, padding, bias=not transposed)

    def forward(self, x):
        return self.conv(F.relu(self.bn(x)))


class Unit(nn.Module):
    """Pre-activation residual unit: x + BRC(BRC(x))."""

    def __init__(self, c):
        super().__init__()
        self.a, self.b = BRC(c, c, 3, 1, 1), BRC(c, c, 3, 1, 1)

    def forward(self, x):
        return x + self.b(self.a(x))


class Level(nn.Module):
    def __init__(self, cin, cout, up):
        super().__init__()
        if up:
            self.main = nn.Sequential(BRC(cin, cout, 4, 2, 1, transposed=True), BRC(cout, cout, 3, 1, 1))
            self.shortcut = BRC(cin, cout, 2, 2, 0, transposed=True)
        else:
            self.main = nn.Sequential(BRC(cin, cout, 3, 2, 1), BRC(cout, cout, 3, 1, 1))
            self.shortcut = BRC(cin, cout, 1, 2, 0)
        self.unit = Unit(cout)

    def forward(self, x):
        return self.unit(self.main(x) + self.shortcut(x))


class Output:
    def __init__(self, logits, features, scale_maps, levels=None):
        self.logits, self.features, self.scale_maps, self.levels = logits, features, scale_maps, levels


class MEnetTorch(nn.Module):
    def __init__(self, image_size=64, width=4, feature_dim=16, variant="menet", ce_weight=1.0,
                 metric_gradient="authors", background="authors"):
        super().__init__()
        if image_size % 32 or image_size < 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        if variant not in ("menet", "ce-only", "ce-plain") or metric_gradient not in ("authors", "exact"):
            raise ValueError(f"unknown variant {variant!r} or metric_gradient {metric_gradient!r}")
        self.image_size, self.variant, self.ce_weight = image_size, variant, ce_weight
        self.metric_gradient, self.background = metric_gradient, background
        c = [width * 2 ** i for i in range(6)]
        k = image_size // 32
        self.stem_conv = nn.Conv2d(3, c[0], 3, 1, 1)
        self.stem_bn = nn.BatchNorm2d(c[0])
        self.stem_units = nn.Sequential(Unit(c[0]), Unit(c[0]))
        self.down = nn.ModuleList(Level(c[i - 1], c[i], up=False) for i in range(1, 6))
        self.squeeze = BRC(c[5], c[5], k)
        self.expand = BRC(c[5], c[5], k, transposed=True)
        self.up = nn.ModuleList(Level(2 * c[j + 1], c[j], up=True) for j in (4, 3, 2, 1, 0))
        if variant == "ce-plain":
            self.ce_conv, self.ce_bn = nn.Conv2d(c[0], 2, 3, 1, 1), nn.BatchNorm2d(2)
        else:
            sources = [3, c[0], c[1], c[2], c[3], c[4], c[5], c[0], c[1], c[2], c[3], c[4], c[5]]
            self.scale_maps = nn.ModuleList(BRC(ch, 1, 3, 1, 1) for ch in sources)
            if variant == "menet":
                self.feature_conv, self.feature_bn = nn.Conv2d(13, feature_dim, 3, 1, 1), nn.BatchNorm2d(feature_dim)
            self.ce_conv, self.ce_bn = nn.Conv2d(13, 2, 3, 1, 1), nn.BatchNorm2d(2)
        self.reset_parameters()

    def reset_parameters(self):
        """Caffe's xavier filler (U(+-sqrt(3 / fan_in)), fan_in = size / first axis), biases 0,
        BN scale 1 and shift 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                bound = math.sqrt(3.0 / (m.weight.numel() // m.weight.shape[0]))
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, images, levels=False):
        """images (B, 3, S, S) raw 0-255 -> Output(logits, features f = tanh(...) before
        normalisation, the 13 upsampled scale maps, and with ``levels`` a dict of every level)."""
        S = self.image_size
        e = [self.stem_units(F.relu(self.stem_bn(self.stem_conv(images))))]
        for level in self.down:
            e.append(level(e[-1]))
        bottleneck = self.squeeze(e[5])
        d5 = self.expand(bottleneck)
        g, x = {}, d5
        for j, level in zip((4, 3, 2, 1, 0), self.up):
            x = g[j] = level(torch.cat([x, e[j + 1]], dim=1))
        record = {f"e{i}": e[i] for i in range(6)}
        record.update({"bottleneck": bottleneck, "d5": d5}, **{f"g{j}": g[j] for j in (4, 3, 2, 1, 0)})
        if self.variant == "ce-plain":
            return Output(self.ce_bn(self.ce_conv(g[0])), None, None, record if levels else None)
        sources = [images] + e + [g[0], g[1], g[2], g[3], g[4], d5]
        ups = [F.interpolate(conv(s), size=(S, S), mode="nearest") for conv, s in zip(self.scale_maps, sources)]
        for name, u in zip(["image"] + [f"e{i}" for i in range(6)] + [f"g{j}" for j in range(5)] + ["d5"], ups):
            record[f"map_{name}"] = u
        maps = torch.cat(ups, dim=1)
        features = torch.tanh(self.feature_bn(self.feature_conv(maps))) if self.variant == "menet" else None
        return Output(self.ce_bn(self.ce_conv(maps)), features, maps, record if levels else None)

    def loss(self, out, masks, metric_gradient=None):
        """L = metric + ce_weight * CE. Returns (total, {"metric": ..., "ce": ...}) (detached)."""
        ce = cross_entropy(out.logits, masks)
        if self.variant != "menet":
            return ce, {"ce": ce.detach()}
        ml = metric_loss(out.features, masks, metric_gradient or self.metric_gradient)
        return ml + self.ce_weight * ce, {"metric": ml.detach(), "ce": ce.detach()}

    @torch.no_grad()
    def saliency_maps(self, images):
        """{"ce", "metric", "metric_<other reading>"} as minimenet's ``MEnet.saliency_maps``, (B, S, S)."""
        was = self.training
        self.eval()
        try:
            out = self(images)
        finally:
            self.train(was)
        z = out.logits
        maps = {"ce": torch.sigmoid(z[:, 1] - z[:, 0])}
        if out.features is not None:
            y = out.features / out.features.norm(dim=1, keepdim=True)
            for reading in ("authors", "paper"):
                maps["metric" if reading == self.background else f"metric_{reading}"] = metric_saliency(y, maps["ce"], reading)
        return maps


# --- losses --------------------------------------------------------------------------------------

def cross_entropy(logits, labels):
    """Two-class softmax cross entropy over all pixels: per image sum / (2 H W), summed."""
    h, w = logits.shape[2:]
    return F.cross_entropy(logits, labels.long(), reduction="sum") / (2 * h * w)


def hard_negative_mask(terms, labels):
    """(B, P) -> bool (B, P): every minority-class pixel plus as many majority-class pixels with
    the largest term (stable: ties in pixel order)."""
    salient = labels == 1
    n_s = salient.sum(dim=1)
    n_b = labels.shape[1] - n_s
    minority = torch.where((n_s <= n_b)[:, None], salient, ~salient)
    quota = torch.minimum(n_s, n_b)
    ranked = terms.masked_fill(minority, -math.inf)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(labels.shape[1], device=labels.device).expand_as(order))
    return minority | (rank < quota[:, None])


def metric_terms(y, labels):
    """Per-pixel terms ||y - c_own||^2 - ||y - c_other||^2 (B, P) and (c_other - c_own) (B, C, P)."""
    b, c = y.shape[:2]
    feats = y.reshape(b, c, -1)
    s = (labels.reshape(b, 1, -1) == 1).to(y.dtype)
    n_s = s.sum(dim=2)
    n_b = feats.shape[2] - n_s
    c_s = (feats * s).sum(dim=2) / n_s.clamp_min(1)
    c_b = (feats * (1 - s)).sum(dim=2) / n_b.clamp_min(1)
    own = s * c_s[:, :, None] + (1 - s) * c_b[:, :, None]
    other = s * c_b[:, :, None] + (1 - s) * c_s[:, :, None]
    terms = ((feats - own) ** 2).sum(dim=1) - ((feats - other) ** 2).sum(dim=1)
    return terms, other - own


def metric_loss(f, labels, gradient="authors"):
    """Eq. 3 on y = f / ||f|| with hard mining; value sum_n sum_{i mined} term_i / (H W).

    "authors": gradient m (c_other - c_own) / (C H W) on f (centroids constant, normalisation
    passed straight through), as the surrogate (f * g.detach()).sum() whose value is replaced.
    "exact": autograd through the normalisation and the centroids, mask held fixed."""
    b, c, h, w = f.shape
    y = f / torch.sqrt((f * f).sum(dim=1, keepdim=True))
    flat_labels = labels.reshape(b, -1)
    if gradient == "exact":
        terms, _ = metric_terms(y, flat_labels)
        m = hard_negative_mask(terms.detach(), flat_labels).to(f.dtype)
        return (terms * m).sum() / (h * w)
    with torch.no_grad():
        terms, direction = metric_terms(y, flat_labels)
        m = hard_negative_mask(terms, flat_labels).to(f.dtype)
        value = (terms * m).sum() / (h * w)
        g = (direction * m[:, None, :] / (c * h * w)).reshape(f.shape)
    surrogate = (f * g).sum()
    return surrogate - surrogate.detach() + value


# --- Eq. 5 ---------------------------------------------------------------------------------------

def metric_saliency(y, p, reading="authors"):
    """Distance of each unit feature to a background centroid, min-max scaled per image.
    "paper": mean of the pixels with p < 0.5 (else the least salient 10 %), Euclidean distance.
    "authors": up to 100 border-band pixels with p < 0.5 (band 20 S / 224), greedy 2-cluster
    split, the larger cluster's mean, squared distance."""
    centres = []
    for fi, pi in zip(y, p):
        if reading == "paper":
            bg = pi < 0.5
            if not bool(bg.any()):
                flat = pi.reshape(-1)
                bg = torch.zeros_like(flat, dtype=torch.bool)
                bg[torch.argsort(flat)[:max(1, int(FALLBACK_FRACTION * flat.numel()))]] = True
                bg = bg.reshape(pi.shape)
            centres.append(fi[:, bg].mean(dim=1))
        else:
            centres.append(_border_centroid(fi, pi))
    d = ((y - torch.stack(centres)[:, :, None, None]) ** 2).sum(dim=1)
    if reading == "paper":
        d = d.sqrt()
    lo = d.amin(dim=(1, 2), keepdim=True)
    span = d.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (d - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(d))


def _border_centroid(fi, pi):
    h, w = pi.shape
    band = max(1, round(BORDER_BAND_AT_224 * h / 224))
    ring = numpy.ones((h, w), bool)
    ring[band:h - band, band:w - band] = False
    cand = numpy.flatnonzero(ring & (pi.cpu().numpy() < 0.5))
    if cand.size == 0:
        cand = numpy.flatnonzero(ring)
    picked = numpy.random.default_rng(BORDER_SEED).choice(cand, min(BORDER_SAMPLES, cand.size), replace=False)
    samples = fi.reshape(fi.shape[0], -1)[:, torch.as_tensor(picked, device=fi.device)].T.cpu().numpy()
    clusters = [[samples[0]], []]
    for v in samples[1:]:
        d0 = ((v - numpy.mean(clusters[0], axis=0)) ** 2).sum()
        d1 = ((v - numpy.mean(clusters[1], axis=0)) ** 2).sum() if clusters[1] else 2.0
        clusters[1 if d0 > d1 else 0].append(v)
    big = clusters[0] if len(clusters[0]) >= len(clusters[1]) else clusters[1]
    return torch.as_tensor(numpy.mean(big, axis=0), dtype=fi.dtype, device=fi.device)


# --- construction and weights --------------------------------------------------------------------

def build(preset, **overrides):
    return MEnetTorch(**{**PRESETS[preset], **overrides})


def from_config(config):
    """The twin of a ``minimenet.model.MEnetConfig`` (its dtype: float64 gives a double model)."""
    model = MEnetTorch(config.image_size, config.width, config.feature_dim, config.variant, config.ce_weight,
                       config.metric_gradient, config.background)
    return model.double() if str(config.dtype) == "float64" else model


def copy_from_minimenet(torch_model, mm_model):
    """Copy minimenet's parameters (in order) and its BN running statistics into the twin."""
    from minimenet import backend, nn as mnn
    params = mm_model.parameters()
    mine = list(torch_model.parameters())
    shapes = [tuple(p.shape) for p in params], [tuple(p.shape) for p in mine]
    if shapes[0] != shapes[1]:
        raise ValueError(f"parameter shapes differ: minimenet {len(shapes[0])}, torch {len(shapes[1])}; "
                         f"first difference at {next((i for i, (a, b) in enumerate(zip(*shapes)) if a != b), None)}")
    mm_bn = [m for m in mm_model.modules() if isinstance(m, mnn.BatchNorm2d)]
    t_bn = [m for m in torch_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(mm_bn) == len(t_bn), (len(mm_bn), len(t_bn))

    def put(dst, src):
        dst.copy_(torch.from_numpy(numpy.ascontiguousarray(backend.to_numpy(src))).to(dst))
    with torch.no_grad():
        for a, b in zip(params, mine):
            put(b, a.data)
        for a, b in zip(mm_bn, t_bn):
            put(b.running_mean, a.running_mean)
            put(b.running_var, a.running_var)
            b.momentum, b.eps = a.momentum, a.eps
    return torch_model


def sgd(model, lr, momentum=0.9, weight_decay=1e-8):
    """The authors' solver settings: convolution biases at twice the lr and without weight decay."""
    biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
    rest = [p for p in model.parameters() if id(p) not in biases]
    groups = [dict(params=rest), dict(params=[p for p in model.parameters() if id(p) in biases], lr=2 * lr, weight_decay=0.0)]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def count_parameters(model):
    """Trainable parameters (BatchNorm's weight and bias included, running statistics not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    for name in PRESETS:
        model = build(name)
        convs = sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
        bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        print(f"{name:6s}: {count_parameters(model):,} parameters, {convs} conv/deconv layers, {bns} batch norms")
