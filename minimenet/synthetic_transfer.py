"""A second synthetic salient-object generator, for measuring transfer only: training never sees it.

``synthesize_transfer_sample(seed, index)`` shares no code with the training generator
(``minimenet.synthetic``) and draws differently on purpose:

* **Salient objects**: 1-6 of them (2 or more in about half the images), from shape families the
  training set does not have: superformula shapes, rounded rectangles, crescents, hearts, letters
  built from strokes (L, T, X, +, H), rings and frames (holes), ladders (holes and thin bars),
  branching trees and spirals (thin parts). Small objects are common (in a quarter of the images
  the mask covers under 3.5 %; median 7 %); positions anywhere or around the middle; fills are
  HSV-drawn colours, flat, with a linear gradient or with a dot pattern. Sides of 96-160 px.
* **Backgrounds**: a Voronoi mosaic of large cells, horizontal strata with wavy boundaries, a
  four-corner colour blend with grain, or a collage of blurred rectangles; non-salient texture
  comes from a regular grid of tiles or a speckle of tiny dots over the whole image.

``make_transfer_dataset(root, count=200, seed=0)`` writes such a set in the MSRA10K layout
(``00000.jpg`` + ``00000.png``), for ``examples/evaluate.py``.
"""
import colorsys
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TRANSFER_VERSION = 1


def _hsv(rng, saturation=(0.2, 0.9), value=(0.25, 0.95)):
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb, np.float32) * 255


def _rotated(points, cx, cy, angle):
    points = np.asarray(points, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + c * px - s * py, cy + s * px + c * py) for px, py in points]


# --- Backgrounds ---------------------------------------------------------------------------------


def _voronoi(rng, h, w):
    seeds = rng.uniform(0, 1, (int(rng.integers(3, 9)), 2)) * (h, w)
    y, x = np.mgrid[0:h, 0:w]
    owner = np.argmin((y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2, axis=-1)
    colours = np.stack([_hsv(rng, (0.05, 0.6)) for _ in seeds])
    return colours[owner]


def _strata(rng, h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    canvas = np.broadcast_to(_hsv(rng, (0.05, 0.6)), (h, w, 3)).copy()
    for level in np.sort(rng.uniform(0.1, 0.9, int(rng.integers(1, 5)))):
        boundary = level * h + rng.uniform(0, 0.08) * h * np.sin(x / w * rng.uniform(2, 12) + rng.uniform(0, 6))
        canvas[y > boundary] = _hsv(rng, (0.05, 0.6))
    return canvas


def _corners(rng, h, w):
    corners = np.stack([_hsv(rng, (0.0, 0.5)) for _ in range(4)]).reshape(2, 2, 3)
    v = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    u = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    top = corners[0, 0] * (1 - u) + corners[0, 1] * u
    bottom = corners[1, 0] * (1 - u) + corners[1, 1] * u
    return top * (1 - v) + bottom * v + rng.normal(0, rng.uniform(2, 12), (h, w, 1))


def _collage(rng, h, w):
    image = Image.new("RGB", (w, h), tuple(int(c) for c in _hsv(rng, (0.0, 0.5))))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.2, 0.7) * w, y0 + rng.uniform(0.2, 0.7) * h
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in _hsv(rng, (0.0, 0.5))))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 4))), np.float32)


def _non_salient_texture(rng, canvas):
    h, w, _ = canvas.shape
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    if rng.random() < 0.5:  # a regular grid of small tiles
        step = rng.uniform(5, 11)
        size = step * rng.uniform(0.3, 0.6)
        for gy in np.arange(rng.uniform(0, step), h, step):
            for gx in np.arange(rng.uniform(0, step), w, step):
                draw.rectangle([gx, gy, gx + size, gy + size], fill=255)
    else:  # speckle: tiny dots everywhere
        for px, py in rng.uniform(0, 1, (int(rng.integers(40, 160)), 2)) * (w, h):
            r = rng.uniform(0.5, 1.8)
            draw.ellipse([px - r, py - r, px + r, py + r], fill=255)
    weight = np.asarray(layer, np.float32)[..., None] / 255 * rng.uniform(0.15, 0.5)
    return canvas + weight * (_hsv(rng) - canvas)


# --- Salient objects -----------------------------------------------------------------------------


def _supershape(rng, cx, cy, r):
    m, n1, n2, n3 = rng.integers(2, 9), rng.uniform(0.5, 6), rng.uniform(0.5, 6), rng.uniform(0.5, 6)
    phi = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    radius = (np.abs(np.cos(m * phi / 4)) ** n2 + np.abs(np.sin(m * phi / 4)) ** n3) ** (-1 / n1)
    radius = r * radius / radius.max()
    return _rotated(np.stack([radius * np.cos(phi), radius * np.sin(phi)], 1), cx, cy, rng.uniform(0, 6.3))


def _heart(rng, cx, cy, r):
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    px = 16 * np.sin(t) ** 3
    py = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return _rotated(np.stack([px, py], 1) * r / 17, cx, cy, rng.uniform(-0.6, 0.6))


def _draw_object(rng, draw, cx, cy, r):
    """Draw one salient object (255) with its holes (0) onto ``draw``."""
    family = rng.choice(["super", "roundrect", "crescent", "heart", "letter", "ring", "frame", "ladder",
                         "tree", "spiral"])
    angle = rng.uniform(0, 2 * np.pi)
    stroke = max(1, int(r * rng.uniform(0.15, 0.35)))
    if family == "super":
        draw.polygon(_supershape(rng, cx, cy, r), fill=255)
    elif family == "roundrect":
        a, b = r * rng.uniform(0.6, 1.2), r * rng.uniform(0.4, 1.0)
        draw.rounded_rectangle([cx - a, cy - b, cx + a, cy + b], radius=rng.uniform(0.1, 0.5) * min(a, b), fill=255)
    elif family == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        shift = r * rng.uniform(0.35, 0.7)
        ox, oy = cx + shift * np.cos(angle), cy + shift * np.sin(angle)
        draw.ellipse([ox - r * 0.9, oy - r * 0.9, ox + r * 0.9, oy + r * 0.9], fill=0)
    elif family == "heart":
        draw.polygon(_heart(rng, cx, cy, r), fill=255)
    elif family == "letter":
        strokes = {"L": [((-1, -1), (-1, 1)), ((-1, 1), (0.8, 1))], "T": [((-1, -1), (1, -1)), ((0, -1), (0, 1))],
                   "X": [((-1, -1), (1, 1)), ((-1, 1), (1, -1))], "+": [((0, -1), (0, 1)), ((-1, 0), (1, 0))],
                   "H": [((-1, -1), (-1, 1)), ((1, -1), (1, 1)), ((-1, 0), (1, 0))]}[rng.choice(list("LTX+H"))]
        for start, end in strokes:
            draw.line(_rotated(np.array([start, end]) * r * 0.8, cx, cy, rng.uniform(-0.3, 0.3)), fill=255, width=stroke)
    elif family == "ring":
        draw.ellipse([cx - r, cy - r * 0.8, cx + r, cy + r * 0.8], fill=255)
        inner = rng.uniform(0.4, 0.7)
        draw.ellipse([cx - r * inner, cy - r * 0.8 * inner, cx + r * inner, cy + r * 0.8 * inner], fill=0)
    elif family == "frame":
        a, b = r * rng.uniform(0.7, 1.1), r * rng.uniform(0.5, 1.0)
        draw.polygon(_rotated([(-a, -b), (a, -b), (a, b), (-a, b)], cx, cy, angle), fill=255)
        t = rng.uniform(0.15, 0.35)
        draw.polygon(_rotated([(-a * (1 - t), -b * (1 - t)), (a * (1 - t), -b * (1 - t)),
                               (a * (1 - t), b * (1 - t)), (-a * (1 - t), b * (1 - t))], cx, cy, angle), fill=0)
    elif family == "ladder":  # two rails and rungs: holes between thin bars
        a, b = r * 0.45, r
        bar = max(1, int(r * rng.uniform(0.08, 0.18)))
        for side in (-a, a):
            draw.line(_rotated([(side, -b), (side, b)], cx, cy, angle), fill=255, width=bar)
        for rung in np.linspace(-b, b, int(rng.integers(3, 7))):
            draw.line(_rotated([(-a, rung), (a, rung)], cx, cy, angle), fill=255, width=bar)
    elif family == "tree":  # a trunk that branches twice: thin parts
        def branch(x0, y0, length, direction, width, depth):
            x1, y1 = x0 + length * np.cos(direction), y0 + length * np.sin(direction)
            draw.line([(x0, y0), (x1, y1)], fill=255, width=max(1, int(width)))
            if depth:
                for turn in (-1, 1):
                    branch(x1, y1, length * 0.65, direction + turn * rng.uniform(0.3, 0.8), width * 0.6, depth - 1)
        branch(cx, cy + r, r * 0.9, -np.pi / 2 + rng.uniform(-0.3, 0.3), max(2, r * 0.25), 2)
        crown = r * rng.uniform(0.3, 0.5)
        if rng.random() < 0.5:
            draw.ellipse([cx - crown, cy - r * 0.6 - crown, cx + crown, cy - r * 0.6 + crown], fill=255)
    else:  # spiral: a thick curve
        turns = rng.uniform(1.2, 2.5)
        t = np.linspace(0, turns * 2 * np.pi, 60)
        rr = r * (0.15 + 0.85 * t / t[-1])
        draw.line(_rotated(np.stack([rr * np.cos(t), rr * np.sin(t)], 1), cx, cy, angle),
                  fill=255, width=max(1, int(r * rng.uniform(0.1, 0.2))), joint="curve")


def _object_fill(rng, h, w, base):
    style = rng.integers(3)
    if style == 0:
        return np.broadcast_to(base, (h, w, 3))
    if style == 1:  # a linear gradient towards another colour
        other = _hsv(rng)
        direction = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (x * np.cos(direction) + y * np.sin(direction)) / max(h, w)
        ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
        return base + ramp[..., None] * (other - base)
    layer = Image.new("L", (w, h), 0)  # polka dots
    draw = ImageDraw.Draw(layer)
    step = rng.uniform(3, 7)
    for gy in np.arange(0, h, step):
        for gx in np.arange((gy / step % 2) * step / 2, w, step):
            draw.ellipse([gx - step / 4, gy - step / 4, gx + step / 4, gy + step / 4], fill=255)
    dots = np.asarray(layer, np.float32)[..., None] / 255
    return base + dots * (_hsv(rng) - base)


def synthesize_transfer_sample(seed, index, min_side=96, max_side=160):
    """One transfer image (uint8 (H, W, 3)) and its salient-object mask (bool (H, W))."""
    rng = np.random.default_rng([seed, index, 7919])
    h, w = (int(side) for side in rng.integers(min_side, max_side + 1, 2))
    canvas = [_voronoi, _strata, _corners, _collage][rng.integers(4)](rng, h, w).astype(np.float32)
    if rng.random() < 0.6:
        canvas = _non_salient_texture(rng, canvas)
    count = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.45, 0.2, 0.15, 0.1, 0.05, 0.05]))
    mask = np.zeros((h, w), bool)
    for _ in range(count):
        fraction = np.exp(rng.uniform(np.log(0.015), np.log(0.5 / count ** 0.7)))
        r = max(3.0, np.sqrt(fraction * h * w / np.pi))
        if rng.random() < 0.5:
            cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
        else:
            cx, cy = np.clip(0.5 + 0.18 * rng.standard_normal(2), 0.05, 0.95) * (w, h)
        layer = Image.new("L", (w, h), 0)
        _draw_object(rng, ImageDraw.Draw(layer), cx, cy, r)
        shape = np.asarray(layer) > 127
        if not shape.any():
            continue
        nearby = canvas[shape].mean(axis=0)
        base = max((_hsv(rng) for _ in range(8)), key=lambda colour: np.linalg.norm(colour - nearby))
        canvas = np.where(shape[..., None], _object_fill(rng, h, w, base), canvas)
        mask |= shape
    if not mask.any():
        layer = Image.new("L", (w, h), 0)
        ImageDraw.Draw(layer).ellipse([w * 0.3, h * 0.3, w * 0.7, h * 0.7], fill=255)
        mask = np.asarray(layer) > 127
        canvas = np.where(mask[..., None], _hsv(rng), canvas)
    canvas = canvas + rng.normal(0, rng.uniform(1, 5), canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mask


def make_transfer_dataset(root, count=200, seed=0):
    """Write ``count`` transfer images in the MSRA10K layout to ``root`` and return it. The same
    seed gives byte-identical files; a folder with a matching marker is reused, one holding only
    this generator's files is rewritten, and any other non-empty folder is refused (ValueError)."""
    root = Path(root)
    marker = {"generator": "minimenet.synthetic_transfer", "version": TRANSFER_VERSION, "count": count, "seed": seed}
    marker_path = root / "minimenet-transfer.json"
    if marker_path.exists() and json.loads(marker_path.read_text()) == marker:
        return root
    if root.exists() and any(not re.fullmatch(r"\d{5,}\.(jpg|png)|minimenet-transfer\.json", entry.name)
                             for entry in root.iterdir()):
        raise ValueError(f"{root} holds files other than a transfer set; choose another folder")
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        stale.unlink()
    for index in range(count):
        image, mask = synthesize_transfer_sample(seed, index)
        Image.fromarray(image).save(root / f"{index:05d}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / f"{index:05d}.png")
    marker_path.write_text(json.dumps(marker, indent=1))
    return root
