"""Reading one image or mask file into arrays.

Loading (``read_image``, ``read_mask``): every file is first turned by its own EXIF orientation
tag, as a viewer displays it (what ``PIL.ImageOps.exif_transpose`` does). Images become uint8 RGB:
grey, palette and RGBA are converted (alpha is dropped); a 16-bit grey image is scaled from
0..65535 to 0..255 (divided by 257); a float image (TIFF) by the 0-1 convention when its values lie
in [0, 1] (x 255), otherwise stretched from its own minimum to its maximum.

Masks are read into one channel of values, then binarised by ``binarize_mask``, the rule that
``minimenet.metrics`` uses too:

* reading: grey (8- or 16-bit, float) as stored; RGB by the brightest channel of each pixel; a
  mask whose colour is one flat value and whose alpha channel varies by its alpha (the object drawn
  only in alpha); a palette mask whose colours are all grey by those grey levels, and any other
  palette mask (a coloured index mask, e.g. VOC's with index 1 = (128, 0, 0)) as non-black = salient;
* binarising: only values 0 and 1 are labels (1 is salient); exactly two values, one of them 0
  (0/255, 0/65535, ...), make the other salient; anything else is a grey image, salient where
  > 128 on the 8-bit scale (PySODMetrics' rule), i.e. > 32896 when a value exceeds 255 (16-bit)
  and > 128/255 for a float mask within [0, 1].

A mask that comes out empty or all salient although its file holds more than one value is loaded
with a ``DatasetWarning`` (its encoding was probably not understood). Masks carry EXIF orientation
rarely, but when one does it is applied like an image's. A mask with the stored (unturned) size of
an image whose orientation swaps width and height was drawn on the stored pixels and is turned
like the image, with a warning; after a 180-degree turn or a mirror the sizes cannot tell, and the
mask is taken as drawn on the displayed image. Any other mask whose size differs from its image's
is resized to the image's size (nearest neighbour) with a warning.
"""
import warnings

import numpy as np
from PIL import Image

from .errors import DatasetWarning

MASK_THRESHOLD = 128


_TRANSPOSE = getattr(Image, "Transpose", Image)  # Pillow >= 9.1 has the enum; older ones the constants
# PIL's transposes for the EXIF orientation tag 2..8 (the table ImageOps.exif_transpose uses).
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TRANSPOSES = {
    2: _TRANSPOSE.FLIP_LEFT_RIGHT, 3: _TRANSPOSE.ROTATE_180, 4: _TRANSPOSE.FLIP_TOP_BOTTOM,
    5: _TRANSPOSE.TRANSPOSE, 6: _TRANSPOSE.ROTATE_270, 7: _TRANSPOSE.TRANSVERSE,
    8: _TRANSPOSE.ROTATE_90}
_SIDE_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_SIXTEEN_BIT_MAX = 65535
# A grey mask is salient where its value is > 128 on the 8-bit scale (PySODMetrics' rule); on the
# 16-bit scale that is > 128 * 257 (257 = 65535 / 255), on the 0-1 float scale > 128 / 255.
_MASK_THRESHOLD_16_BIT = MASK_THRESHOLD * 257


def _exif_orientation(image):
    """The EXIF orientation tag (1-8) of an open image; 1 (as stored) when absent or unreadable."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make a readable image unreadable
        return 1
    return orientation if orientation in _ORIENTATION_TRANSPOSES else 1


def _oriented(image):
    """``image`` turned the way a viewer displays it, by its own EXIF orientation, and that orientation."""
    orientation = _exif_orientation(image)
    if orientation == 1:
        return image, 1
    return image.transpose(_ORIENTATION_TRANSPOSES[orientation]), orientation


def _float_to_uint8(values):
    """A float image as uint8: values within [0, 1] by the 0-1 convention (x 255), any other range
    stretched from its own minimum to its maximum; NaN and infinities become 0."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = values[finite].min(), values[finite].max()
    if low >= 0 and high <= 1:
        scaled = values * 255
    elif high > low:
        scaled = (values - low) / (high - low) * 255
    else:  # a constant outside [0, 1]: nothing to stretch
        scaled = np.clip(values, 0, 255)
    scaled[~finite] = 0
    return np.rint(scaled).astype(np.uint8)


def _sixteen_bit_to_uint8(values):
    """A 16-bit (or 32-bit integer) grey image as uint8: 0..65535 maps onto 0..255 (divided by 257);
    a 32-bit image with values outside 0..65535 is stretched by its own range instead."""
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > _SIXTEEN_BIT_MAX):
        return _float_to_uint8(values.astype(np.float64))
    return np.rint(values / 257).astype(np.uint8)


def _rgb_uint8(image):
    """Any PIL image as uint8 (H, W, 3) RGB, high-bit-depth grey scaled rather than clipped."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        # PIL's convert("RGB") clips these at 255: a 16-bit photo would come out all white and a
        # 0-1 float image all black.
        values = np.asarray(image)
        grey = _float_to_uint8(values) if image.mode == "F" else _sixteen_bit_to_uint8(values)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def read_image(path):
    """An image file as uint8 (H, W, 3) RGB in its displayed orientation (see the module doc)."""
    return _read_image_and_orientation(path)[0]


def _read_image_and_orientation(path):
    with Image.open(path) as image:
        oriented, orientation = _oriented(image)
        return _rgb_uint8(oriented), orientation



def binarize_mask(values):
    """A mask array as bool (True = salient), by the one rule that loading and metrics share:

    * bool: as it is;
    * only the values 0 and 1 (or all 1): a label map, 1 is salient;
    * exactly two values, one of them 0 (0/255, 0/65535, a dim 0/100): the other value is salient;
    * anything else is a grey image, salient where > 128 on the 8-bit scale (PySODMetrics' rule):
      > 32896 (128 x 257) when a value exceeds 255 (a 16-bit mask), > 128 / 255 for a float mask
      within [0, 1].
    """
    values = np.asarray(values)
    if values.dtype == bool:
        return values
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"a mask must be bool, integer or float, got {values.dtype}")
    if values.size == 0:
        return np.zeros(values.shape, bool)
    low, high = values.min(), values.max()
    if np.issubdtype(values.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("the mask contains NaN or infinite values")
    if high > 0 and (low == 0 or low == high == 1) and np.all((values == low) | (values == high)):
        return values == high  # a two-valued mask in any encoding: labels, 0/255, 16-bit, a palette's indices
    if high > 255:
        threshold = _MASK_THRESHOLD_16_BIT
    elif np.issubdtype(values.dtype, np.floating) and high <= 1:
        threshold = MASK_THRESHOLD / 255
    else:
        threshold = MASK_THRESHOLD
    return values > threshold


def _palette_mask_values(image):
    """A palette mask as grey levels (all its colours grey) or as bool, non-black = salient (a
    coloured index mask such as VOC's, whose object colours, e.g. (128, 0, 0), are dark)."""
    indices = np.asarray(image)
    palette = np.zeros((256, 3), np.uint8)
    entries = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    palette[:len(entries)] = entries  # indices beyond the stored palette are black, as PIL shows them
    colours = palette[indices]
    used = palette[np.unique(indices)]
    if np.all((used[:, 0] == used[:, 1]) & (used[:, 1] == used[:, 2])):
        return colours[..., 0]  # a grey mask that a PNG optimiser stored as a palette
    return colours.any(axis=-1)


def _mask_values(image):
    """The one-channel values a mask's salient pixels are read from (before ``binarize_mask``)."""
    mode = image.mode
    if mode == "P" and "transparency" not in image.info:
        return _palette_mask_values(image)
    if mode in ("1", "L") or mode in _SIXTEEN_BIT_MODES or mode == "F":
        return np.asarray(image)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    # A coloured object on black counts by its brightest channel (luma would make a pure dark red
    # object dim); a grey mask is the same either way.
    colour = pixels[..., :3].max(axis=-1)
    if has_alpha:
        alpha = pixels[..., 3]
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return alpha  # the object is drawn only in the alpha channel
    return colour


def read_mask(path):
    """A mask file as bool (H, W), True = salient, in its displayed orientation (see the module doc).

    Warns (DatasetWarning) when the mask comes out empty or full although the file holds more
    than one value: its encoding was probably not understood.
    """
    with Image.open(path) as image:
        oriented, _ = _oriented(image)
        values = _mask_values(oriented)
    mask = binarize_mask(values)
    if values.size and values.min() != values.max() and not (mask.any() and not mask.all()):
        warnings.warn(f"{path}: the mask comes out {'all salient' if mask.all() else 'empty'} although the file holds "
                      f"values from {values.min()} to {values.max()}; check its encoding (minimenet.data reads "
                      "0/1 labels, 0/255, 16-bit, alpha and palette masks; see the module doc)",
                      DatasetWarning, stacklevel=2)
    return mask



def _mask_in_image_orientation(mask, image_shape, orientation, mask_path):
    """``mask`` turned like its image when its size shows it was drawn on the image's stored pixels.

    Only a side-swapping orientation (a 90-degree turn) can be told apart: the mask then has the
    stored height and width, swapped against the displayed image's. After a 180-degree turn or a
    mirror the sizes agree, and the mask is taken as drawn on the displayed image.
    """
    if orientation not in _SIDE_SWAPPING_ORIENTATIONS or mask.shape == image_shape or mask.shape != image_shape[::-1]:
        return mask
    warnings.warn(f"{mask_path}: the mask has the image's stored size {mask.shape[1]}x{mask.shape[0]}, not its displayed "
                  f"size {image_shape[1]}x{image_shape[0]} (EXIF orientation {orientation}); turned like the image",
                  DatasetWarning, stacklevel=3)
    return np.asarray(Image.fromarray(mask).transpose(_ORIENTATION_TRANSPOSES[orientation]))
