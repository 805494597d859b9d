"""Image distortions for the paper's robustness experiments (Table II, Figs. 6 and 8).

The paper corrupts test images with additive white Gaussian noise and with JPEG compression
"with random strengths", without saying which strengths. Ours, chosen to span mild to severe:

- AWGN: zero-mean Gaussian noise of variance v on intensities scaled to [0, 1], then clipped
  and rounded back to 8 bits. Random strengths draw v uniformly from ``AWGN_VARIANCES``
  = [0.001, 0.05] (a standard deviation of 8 to 57 grey levels: from barely visible to the
  level where textures drown).
- JPEG: a Pillow (libjpeg) round trip at quality q. Random strengths draw q uniformly from the
  integers ``JPEG_QUALITIES`` = [10, 50] (strong blocking at 10, visible artefacts at 50;
  above 50 the maps barely change).

A distortion applies to the image only, never to the mask, at the image's own size before it
is resized for the network. Every random draw comes from a generator seeded by the run's seed
and the image's stem, so a rerun, or the same image in another order or dataset, gets exactly
the same corruption.
"""
import io
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

AWGN_VARIANCES = (0.001, 0.05)
JPEG_QUALITIES = (10, 50)
KINDS = ("awgn", "jpeg")


@dataclass(frozen=True)
class Distortion:
    """``kind`` "awgn" or "jpeg"; ``strength`` a variance (awgn) or a quality (jpeg), or None for
    a random strength per image from the kind's range; ``seed`` fixes every draw."""
    kind: str
    strength: float = None
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"distortion: kind must be one of {KINDS}, got {self.kind!r}")
        if self.strength is None:
            return
        if self.kind == "awgn" and not 0 <= self.strength <= 1:
            raise ValueError(f"distortion: an AWGN variance must lie in [0, 1] (intensities are scaled to [0, 1]), got {self.strength}")
        if self.kind == "jpeg" and not (float(self.strength).is_integer() and 1 <= self.strength <= 95):
            raise ValueError(f"distortion: a JPEG quality must be an integer from 1 to 95, got {self.strength}")

    @property
    def name(self):
        """A label for tables and files: "awgn-0.01", "jpeg-30", "awgn-random"."""
        if self.strength is None:
            return f"{self.kind}-random"
        return f"{self.kind}-{self.strength:g}"

    def __call__(self, image, stem):
        """uint8 (H, W, 3) -> uint8 (H, W, 3), the same for the same (seed, stem)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(stem.encode())])
        if self.kind == "awgn":
            variance = self.strength if self.strength is not None else rng.uniform(*AWGN_VARIANCES)
            return awgn(image, variance, rng)
        quality = self.strength if self.strength is not None else rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1)
        return jpeg(image, int(quality))


def awgn(image, variance, rng):
    """Additive white Gaussian noise of ``variance`` on the [0, 1] scale, clipped, back to uint8."""
    noisy = image.astype(np.float64) / 255 + rng.normal(0.0, np.sqrt(variance), image.shape)
    return np.rint(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def jpeg(image, quality):
    """A JPEG encode and decode at ``quality`` (Pillow's libjpeg, 4:2:0 chroma subsampling)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))
