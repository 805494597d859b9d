"""The synthetic training scenes: salient objects on natural-image-like backgrounds.

``synthesize_sample(seed, index)`` draws one scene, a function of ``(seed, index)`` only
(``synthesize_scene`` also says what it drew, for the tests). What is
salient is what saliency datasets label: one to five compact things that stand out from their
surroundings. What is not salient is what photographs put around them: large regions that run
into the border (sky, ground, walls, a studio backdrop), multi-scale texture, repeated clutter
(many small similar things), soft shading, shadows and out-of-focus blur.

A scene, step by step:

* **Background**, one of four kinds: multi-scale smooth noise through a random colour ramp
  (foliage, rock, clouds); a sky/ground split with a wavy, tilted horizon and textured ground; a
  few large flat or textured regions cut by straight edges (walls, tables, a floor); a smooth
  linear or radial gradient (a studio backdrop). Then, independently: a texture over it all
  (half the images), 0-3 soft low-contrast blobs, repeated clutter (30 %: 10-40 small similar
  shapes or short strokes, all over the image or in a band) and a defocus blur of 0.7-2.5 px
  (four images in seven). Colours are mostly unsaturated, as in photographs.
* **Objects** (the mask): 1 (65 %), 2 (20 %), 3 (9 %) or 4-5. One object covers 10-60 % of the
  image (uniform; photographs' salient objects cover a quarter at the median), or 2-10 % an eighth
  of the time; several objects are smaller each. Centres near the middle (70 %), anywhere (15 %)
  or standing on the bottom border (15 %): about 55 % of the masks touch the border. Shapes:
  ellipses, polygons, stars, wobbly blobs, capsules, and creatures (a body, a head, legs or arms
  as thick lines); a quarter get a hole (the background shows through, masked out) and a quarter
  thin parts (sticks 1-4 px wide). Colours are chosen against the background around the object,
  usually far, sometimes close (8 %: low contrast, then with a texture or a brightness step), and
  filled flat, two-toned, textured (stripes, checks, spots, noise, wood) or noisy, often shaded
  and with soft edges. A quarter cast a soft shadow (not salient).
* **Camera**: a smooth illumination change over the whole image, sensor noise, sometimes a
  slight blur.

Everything is NumPy and Pillow's ImageDraw at the image's own resolution: about 4 ms a scene.
"""
import numpy as np
from PIL import Image, ImageDraw

# --- Small image tools ---------------------------------------------------------------------------


def _gaussian_kernel(sigma):
    radius = max(1, int(np.ceil(2.5 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def blur(values, sigma):
    """Separable Gaussian blur of an (H, W) or (H, W, C) float array, edges repeated."""
    if sigma <= 0.05:
        return values
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = values.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        acc = np.zeros_like(out)
        for offset, weight in enumerate(kernel):
            acc += weight * np.take(padded, np.arange(offset, offset + length), axis=axis)
        out = acc
    return out


def smooth_noise(rng, height, width, cell):
    """Bicubic-interpolated white noise with features about ``cell`` pixels apart, in about [0, 1]."""
    cell = max(cell, 1.0)
    rows, columns = int(height / cell) + 3, int(width / cell) + 3
    coarse = rng.random((rows, columns)).astype(np.float32)
    fine = Image.fromarray(coarse).resize((int(columns * cell), int(rows * cell)), Image.BICUBIC)
    top = int(rng.integers(0, max(1, fine.height - height - int(cell)))) + int(cell // 2)
    left = int(rng.integers(0, max(1, fine.width - width - int(cell)))) + int(cell // 2)
    return np.asarray(fine)[top:top + height, left:left + width]


def fractal_noise(rng, height, width, largest=None, octaves=4, persistence=None):
    """Multi-scale noise normalised to [0, 1]: octaves from ``largest`` pixels down, halving."""
    largest = largest or rng.uniform(0.3, 0.8) * max(height, width)
    persistence = rng.uniform(0.35, 0.65) if persistence is None else persistence
    total, amplitude = np.zeros((height, width), np.float32), 1.0
    for octave in range(octaves):
        total += amplitude * smooth_noise(rng, height, width, largest / 2 ** octave)
        amplitude *= persistence
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-6)


def _colour(rng, low=0, high=255):
    """A natural-looking colour: a grey level between ``low`` and ``high`` plus a chroma that is
    mostly small (photographs are far less saturated than uniform RGB draws)."""
    grey = rng.uniform(low, high)
    chroma = min(rng.exponential(45), 150)
    hue = rng.uniform(0, 2 * np.pi)
    # Two unit vectors orthogonal to grey (1, 1, 1): a chroma direction in the colour plane.
    direction = np.cos(hue) * np.array([0.816, -0.408, -0.408]) + np.sin(hue) * np.array([0, 0.707, -0.707])
    return np.clip(grey + chroma * direction, 0, 255).astype(np.float32)


def _colour_ramp(rng, field, count):
    """Map a [0, 1] field through ``count`` random colours (neighbours of one hue family or not)."""
    base = _colour(rng, 40, 215)
    stops = [np.clip(base + rng.uniform(-60, 60) + rng.uniform(-30, 30, 3), 0, 255).astype(np.float32)
             for _ in range(count)]
    positions = np.linspace(0, 1, count)
    out = np.empty(field.shape + (3,), np.float32)
    for channel in range(3):
        out[..., channel] = np.interp(field, positions, [stop[channel] for stop in stops])
    return out


def _texture(rng, height, width, kind=None):
    """A texture field in [0, 1]: stripes, checks, spots, fine noise or wood-like bands."""
    kind = int(rng.integers(5)) if kind is None else kind
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 12)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    if kind == 0:
        return (0.5 + 0.5 * np.sin(2 * np.pi * u / period)).astype(np.float32)
    if kind == 1:
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == 2:
        spots = smooth_noise(rng, height, width, rng.uniform(2, 5))
        return (spots > rng.uniform(0.55, 0.7)).astype(np.float32)
    if kind == 3:
        return smooth_noise(rng, height, width, rng.uniform(1.5, 4))
    warp = smooth_noise(rng, height, width, rng.uniform(8, 20)) * rng.uniform(5, 15)
    return (0.5 + 0.5 * np.sin(2 * np.pi * (u + warp) / period)).astype(np.float32)


def _mix(canvas, weight, fill):
    """canvas += weight * (fill - canvas), weight (H, W) in [0, 1], fill (3,) or (H, W, 3)."""
    canvas += weight[..., None] * (fill - canvas)


# --- Shapes (ImageDraw on an "L" image: fast, exact for the mask) -------------------------------


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


# --- Objects -------------------------------------------------------------------------------------


def _object_centre(rng, height, width, radius):
    where = rng.random()
    if where < 0.7:  # near the middle
        return height * (0.5 + 0.1 * rng.standard_normal()), width * (0.5 + 0.1 * rng.standard_normal())
    if where < 0.85:  # anywhere, partly out of the image now and then
        return rng.uniform(-0.3 * radius, height + 0.3 * radius), rng.uniform(-0.3 * radius, width + 0.3 * radius)
    return height - radius * rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.8) * width  # standing on the bottom


def _object_colour(rng, surround):
    """A colour against the mean ``surround`` colour: usually far from it, sometimes close."""
    low_contrast = rng.random() < 0.08
    target = rng.uniform(25, 45) if low_contrast else rng.uniform(60, 200)
    best, best_gap = None, np.inf
    for candidate in (_colour(rng) for _ in range(16)):
        gap = abs(np.linalg.norm(candidate - surround) - target)
        if gap < best_gap:
            best, best_gap = candidate, gap
    return best, low_contrast


def _paint_object(rng, canvas, mask, height, width):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = slice(max(rows[0] - 4, 0), rows[-1] + 5), slice(max(columns[0] - 4, 0), columns[-1] + 5)
    surround = canvas[box][~mask[box]].mean(axis=0) if (~mask[box]).any() else canvas.reshape(-1, 3).mean(axis=0)
    colour, low_contrast = _object_colour(rng, surround)
    style = int(rng.integers(4)) if not low_contrast else int(rng.choice([2, 3]))
    if style == 0:  # flat
        fill = np.broadcast_to(colour, canvas.shape).copy()
    elif style == 1:  # two-toned: split along a line through the object
        second, _ = _object_colour(rng, surround)
        angle = rng.uniform(0, 2 * np.pi)
        cy, cx = rows.mean(), columns.mean()
        side = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) > rng.uniform(-5, 5)
        fill = np.where(side[..., None], colour, second)
    elif style == 2:  # textured: two colours through a pattern
        second = np.clip(colour + rng.uniform(-110, 110, 3), 0, 255)
        fill = colour + _texture(rng, height, width)[..., None] * (second - colour)
    else:  # a brightness step (for low contrast) or noise texture
        fill = colour * rng.uniform(0.5, 1.5) + (smooth_noise(rng, height, width, rng.uniform(2, 6))[..., None] - 0.5) * 60
    if rng.random() < 0.6:  # shading: lit from one side
        angle = rng.uniform(0, 2 * np.pi)
        light = (x - columns.mean()) * np.cos(angle) + (y - rows.mean()) * np.sin(angle)
        light /= max(len(rows), len(columns)) / 2 + 1
        fill = fill * (1 + rng.uniform(0.1, 0.35) * np.clip(light, -1, 1))[..., None]
    edge = blur(mask.astype(np.float32), rng.uniform(0.3, 0.8)) if rng.random() < 0.6 else mask.astype(np.float32)
    _mix(canvas, edge, np.clip(fill, 0, 255))


def _shadow(rng, canvas, mask):
    shift_y, shift_x = int(rng.integers(1, 5)), int(rng.integers(-4, 5))
    moved = np.roll(np.roll(mask, shift_y, axis=0), shift_x, axis=1).astype(np.float32)
    _mix(canvas, blur(moved, rng.uniform(1.5, 3.0)) * rng.uniform(0.3, 0.6), np.zeros(3, np.float32))


def synthesize_sample(seed, index, min_side=80, max_side=128):
    """One synthetic scene: an image (uint8 (H, W, 3)) and its salient-object mask (bool (H, W))."""
    image, mask, _ = synthesize_scene(seed, index, min_side, max_side)
    return image, mask


def synthesize_scene(seed, index, min_side=80, max_side=128):
    """``synthesize_sample`` plus a description of what was drawn: {"background", "clutter",
    "defocus", "objects": [{"kind", "hole", "thin", "shadow"}, ...]} (objects as drawn; one that
    fell outside the image is left out)."""
    rng = np.random.default_rng([seed, index, 2])
    height, width = (int(side) for side in rng.integers(min_side, max_side + 1, 2))
    info = {"objects": []}
    canvas = _background(rng, height, width, info)
    count = int(rng.choice([1, 2, 3, 4, 5], p=[0.65, 0.2, 0.09, 0.04, 0.02]))
    area = height * width
    mask = np.zeros((height, width), bool)
    for number in range(count):
        # Area fraction: mostly 10-60 % for one object (photographs' salient objects: median about
        # a quarter of the image), small ones (2-10 %) an eighth of the time; less when there are several.
        if rng.random() < 0.12:
            fraction = np.exp(rng.uniform(np.log(0.02), np.log(0.1)))
        else:
            fraction = rng.uniform(0.1, 0.6) / count ** 0.8
        radius = max(2.5, np.sqrt(fraction * area / np.pi))
        for _ in range(4):  # keep most of the object inside the image
            cy, cx = _object_centre(rng, height, width, radius)
            shape, described = _object_shape(rng, height, width, cx, cy, radius)
            if shape.sum() >= 0.4 * fraction * area:
                break
        if not shape.any():
            continue
        described["shadow"] = bool(rng.random() < 0.25)
        if described["shadow"]:
            _shadow(rng, canvas, shape)
        _paint_object(rng, canvas, shape, height, width)
        mask |= shape
        info["objects"].append(described)
    if not mask.any():  # never an empty mask: a centred ellipse
        shape, described = _object_shape(rng, height, width, width / 2, height / 2, 0.25 * min(height, width))
        _paint_object(rng, canvas, shape, height, width)
        mask |= shape
        info["objects"].append({**described, "shadow": False})
    light = 1 + (fractal_noise(rng, height, width, octaves=2) - 0.5) * rng.uniform(0, 0.4)
    canvas *= light[..., None]
    canvas = blur(canvas, float(rng.choice([0, 0, 0, 0.5])))
    canvas += rng.uniform(1, 6) * rng.standard_normal(canvas.shape, dtype=np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mask, info
