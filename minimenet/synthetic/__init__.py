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
The image tools and textures are in ``textures``, the shapes and backgrounds in ``shapes``; this
module places the objects and assembles a scene.
"""
import numpy as np

from .shapes import BACKGROUNDS, _background, _object_shape
from .textures import _colour, _mix, _texture, blur, fractal_noise, smooth_noise


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
