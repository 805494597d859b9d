"""The synthetic scenes' shapes and backgrounds: object outlines drawn with ImageDraw on an "L"
image (fast, and exact for the mask), the four kinds of background, and the non-salient clutter."""
import numpy as np
from PIL import Image, ImageDraw

from .textures import _colour, _colour_ramp, _mix, _texture, blur, fractal_noise, smooth_noise


def _layer(height, width):
    layer = Image.new("L", (width, height), 0)
    return layer, ImageDraw.Draw(layer)


def _outline(rng, cx, cy, radius, kind):
    """Vertices (x, y) of a closed outline of about ``radius``: ellipse, polygon, star or blob."""
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "ellipse":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        a, b = radius * rng.uniform(1.0, 1.3), radius * rng.uniform(0.45, 1.0)
        px, py = a * np.cos(t), b * np.sin(t)
    elif kind == "polygon":
        count = int(rng.integers(3, 9))
        t = (np.arange(count) + rng.uniform(-0.3, 0.3, count)) * 2 * np.pi / count
        r = radius * rng.uniform(0.7, 1.2, count)
        px, py = r * np.cos(t), r * np.sin(t)
    elif kind == "star":
        count = int(rng.integers(4, 9))
        t = np.arange(2 * count) * np.pi / count
        r = radius * np.where(np.arange(2 * count) % 2 == 0, 1.15, rng.uniform(0.4, 0.7))
        px, py = r * np.cos(t), r * np.sin(t)
    else:  # blob: a radius that wobbles with a few angular frequencies, sometimes strongly
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        r = np.ones_like(t)
        strength = rng.uniform(0.08, 0.3)
        for frequency in range(2, 7):
            r += rng.uniform(-strength, strength) / (frequency - 1) ** 0.5 * np.cos(frequency * t + rng.uniform(0, 6.3))
        r = radius * np.maximum(r, 0.25)
        stretch = rng.uniform(0.6, 1.0)
        px, py = r * np.cos(t), r * np.sin(t) * stretch
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + c * a - s * b, cy + s * a + c * b) for a, b in zip(px, py)]


def _stick(draw, rng, x0, y0, length, width, angle=None, fill=255):
    angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
    x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
    draw.line([(x0, y0), (x1, y1)], fill=fill, width=max(1, int(round(width))))
    return x1, y1


def _object_shape(rng, height, width, cx, cy, radius):
    """(bool mask, {"kind", "hole", "thin"}) of one salient object centred near (cx, cy)."""
    layer, draw = _layer(height, width)
    kind = rng.choice(["ellipse", "polygon", "star", "blob", "blob", "capsule", "creature"])
    if kind == "capsule":  # an elongated bar with round ends: bottles, poles, bodies
        angle = rng.uniform(0, np.pi)
        half, thick = radius * rng.uniform(0.9, 1.6), radius * rng.uniform(0.25, 0.6)
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=max(2, int(2 * thick)))
        for ex, ey in ((cx - dx, cy - dy), (cx + dx, cy + dy)):
            draw.ellipse([ex - thick, ey - thick, ex + thick, ey + thick], fill=255)
    elif kind == "creature":  # a body, a head and limbs: thin parts on a compact body
        draw.polygon(_outline(rng, cx, cy, radius * 0.75, "ellipse"), fill=255)
        head = rng.uniform(0, 2 * np.pi)
        hr = radius * rng.uniform(0.25, 0.45)
        hx, hy = cx + radius * 0.85 * np.cos(head), cy + radius * 0.85 * np.sin(head)
        draw.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=255)
        for _ in range(int(rng.integers(2, 6))):
            start = rng.uniform(0, 2 * np.pi)
            sx, sy = cx + 0.5 * radius * np.cos(start), cy + 0.5 * radius * np.sin(start)
            limb = rng.uniform(0.06, 0.18) * radius + 1
            _stick(draw, rng, sx, sy, radius * rng.uniform(0.7, 1.3), limb, start + rng.uniform(-0.6, 0.6))
    else:
        draw.polygon(_outline(rng, cx, cy, radius, kind), fill=255)
    has_hole = radius > 6 and rng.random() < 0.25
    if has_hole:  # a hole the background shows through (a ring, a handle, a frame)
        hole = rng.uniform(0.25, 0.5) * radius
        ox, oy = rng.uniform(-0.25, 0.25, 2) * radius
        hole_kind = "ellipse" if rng.random() < 0.6 else "polygon"
        draw.polygon(_outline(rng, cx + ox, cy + oy, hole, hole_kind), fill=0)
    thin = bool(rng.random() < 0.25)
    if thin:  # thin parts: antennas, legs, handles, 1-4 px wide
        for _ in range(int(rng.integers(1, 4))):
            start = rng.uniform(0, 2 * np.pi)
            sx, sy = cx + 0.6 * radius * np.cos(start), cy + 0.6 * radius * np.sin(start)
            _stick(draw, rng, sx, sy, radius * rng.uniform(0.5, 1.1), rng.uniform(1, 4),
                   start + rng.uniform(-0.5, 0.5))
    return np.asarray(layer) > 127, {"kind": str(kind), "hole": bool(has_hole), "thin": thin}


# --- Backgrounds ---------------------------------------------------------------------------------


BACKGROUNDS = ("noise", "sky-ground", "regions", "gradient")


def _background(rng, height, width, info):
    kind = int(rng.choice(4, p=[0.3, 0.25, 0.25, 0.2]))
    info["background"] = BACKGROUNDS[kind]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:  # multi-scale noise through a colour ramp
        canvas = _colour_ramp(rng, fractal_noise(rng, height, width), int(rng.integers(2, 5)))
    elif kind == 1:  # sky over ground, a wavy tilted horizon, maybe hills between
        horizon = height * rng.uniform(0.25, 0.8) + (x - width / 2) * rng.uniform(-0.3, 0.3)
        horizon = horizon + (smooth_noise(rng, 1, width, rng.uniform(6, 30))[0] - 0.5) * rng.uniform(0, 0.25) * height
        top, bottom = _colour(rng, 60, 250), _colour(rng, 60, 250)
        canvas = top + (y / height)[..., None] * (bottom - top)
        ground = _colour_ramp(rng, fractal_noise(rng, height, width, largest=rng.uniform(8, 40)), 3)
        _mix(canvas, (y > horizon).astype(np.float32), ground)
        if rng.random() < 0.4:
            hills = horizon - height * rng.uniform(0.05, 0.2) * (0.4 + fractal_noise(rng, 1, width, octaves=2)[0])
            _mix(canvas, ((y > hills) & (y <= horizon)).astype(np.float32), _colour(rng, 30, 200))
    elif kind == 2:  # large regions cut by straight edges: walls, tables, floors
        start, end = _colour(rng, 20, 235), _colour(rng, 20, 235)
        canvas = start + (y / height)[..., None] * (end - start)
        for _ in range(int(rng.integers(1, 4))):
            angle = rng.uniform(0, 2 * np.pi)
            offset = rng.uniform(-0.3, 0.3) * max(height, width)
            side = ((x - width / 2) * np.cos(angle) + (y - height / 2) * np.sin(angle)) > offset
            fill = _colour(rng, 20, 235)
            if rng.random() < 0.5:
                fill = fill + (_texture(rng, height, width)[..., None] - 0.5) * rng.uniform(20, 90)
            _mix(canvas, side.astype(np.float32), fill)
    else:  # a studio backdrop: a smooth linear or radial gradient
        start, end = _colour(rng, 20, 235), _colour(rng, 20, 235)
        if rng.random() < 0.5:
            direction = rng.uniform(0, 2 * np.pi)
            ramp = x * np.cos(direction) + y * np.sin(direction)
        else:
            ramp = np.hypot(y - height * rng.uniform(0, 1), x - width * rng.uniform(0, 1))
        ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)
        canvas = start + ramp[..., None] * (end - start)
    if rng.random() < 0.5:  # a texture over the whole background
        canvas += (_texture(rng, height, width)[..., None] - 0.5) * rng.uniform(0.5, 1.5, 3) * rng.uniform(10, 45)
    for _ in range(int(rng.integers(0, 4))):  # soft, low-contrast blobs: light, shade, far things
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.5) * min(height, width)
        soft = np.clip((radius - np.hypot(y - cy, x - cx)) / (rng.uniform(0.3, 1.0) * radius), 0, 1)
        _mix(canvas, soft * rng.uniform(0.15, 0.45), _colour(rng))
    info["clutter"] = bool(rng.random() < 0.3)
    if info["clutter"]:
        _clutter(rng, canvas, height, width)
    info["defocus"] = float(rng.choice([0, 0, 0, 0.7, 1.2, 2.0, 2.5]))
    return blur(canvas, info["defocus"])


def _clutter(rng, canvas, height, width):
    """Many small similar things (pebbles, leaves, grass, dots): repeated, hence not salient."""
    layer, draw = _layer(height, width)
    count = int(rng.integers(10, 41))
    size = rng.uniform(0.02, 0.06) * min(height, width) + 1
    band = (0, height) if rng.random() < 0.5 else tuple(sorted(rng.uniform(0, height, 2)))
    strokes = rng.random() < 0.35
    kind = rng.choice(["ellipse", "polygon", "blob"])
    for _ in range(count):
        cx, cy = rng.uniform(0, width), rng.uniform(band[0], band[1] + 1)
        if strokes:
            _stick(draw, rng, cx, cy, size * rng.uniform(1.5, 3), 1, -np.pi / 2 + rng.uniform(-0.5, 0.5))
        else:
            draw.polygon(_outline(rng, cx, cy, size * rng.uniform(0.7, 1.3), kind), fill=255)
    colour = canvas.reshape(-1, 3).mean(axis=0) + rng.uniform(-50, 50, 3)
    weight = np.asarray(layer, np.float32) / 255 * rng.uniform(0.4, 0.8)
    _mix(canvas, weight, np.clip(colour, 0, 255) + rng.uniform(-15, 15, (height, width, 1)))
