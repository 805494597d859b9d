"""The synthetic scenes' small image tools: Gaussian blur, multi-scale smooth noise, colours and
colour ramps, and the textures objects and backgrounds are filled with."""
import numpy as np
from PIL import Image

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
