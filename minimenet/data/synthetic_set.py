"""The built-in synthetic dataset: scenes of ``minimenet.synthetic`` written once in the MSRA10K
layout and cached, one folder per seed."""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..synthetic import synthesize_sample
from .errors import DatasetError

# The scenes are drawn by minimenet.synthetic (salient objects on natural-image-like backgrounds);
# this section writes them in the MSRA10K layout and caches the set. minimenet.synthetic_transfer
# is a second, independent generator that training never sees, for measuring transfer.


# 1: one large central object among small distractors; 2: minimenet.synthetic's scenes. A set
# written by another version is regenerated (its marker differs), and the default folder's name
# carries the version, so an older cache is never reused.
SYNTHETIC_VERSION = 2
_SYNTHETIC_MARKER = "minimenet-synthetic.json"


def default_synthetic_root(seed=0):
    """Where the synthetic set of ``seed`` lives: ``$MINIMENET_DATA`` if set, else
    ``~/.cache/minimenet/synthetic-v{SYNTHETIC_VERSION}``, with "-seed{seed}" appended for a
    seed other than 0, so that runs with different seeds never rewrite each other's images."""
    override = os.environ.get("MINIMENET_DATA")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = Path(override).expanduser() if override else cache_home / "minimenet" / f"synthetic-v{SYNTHETIC_VERSION}"
    return root if seed == 0 else root.with_name(f"{root.name}-seed{seed}")


def _synthetic_marker(count, seed, min_side, max_side):
    return {"generator": "minimenet.data.make_synthetic_dataset", "version": SYNTHETIC_VERSION,
            "count": count, "seed": seed, "min_side": min_side, "max_side": max_side}


def _read_marker(root):
    try:
        return json.loads((root / _SYNTHETIC_MARKER).read_text())
    except (OSError, ValueError):
        return None


def _holds_only_synthetic_files(root):
    """True when every entry of ``root`` is a file the generator writes (an incomplete or older set)."""
    return all(entry.is_file() and (entry.name == _SYNTHETIC_MARKER or re.fullmatch(r"\d{5,}\.(jpg|png)", entry.name))
               for entry in root.iterdir())


def make_synthetic_dataset(root=None, count=1000, seed=0, *, min_side=80, max_side=128):
    """Write (or reuse) the synthetic salient-object set in the MSRA10K layout and return its folder.

    The scenes are ``minimenet.synthetic.synthesize_sample(seed, index)``: 1-5 salient objects of
    varied size, shape and position on natural-image-like backgrounds with non-salient clutter.
    ``root`` defaults to ``default_synthetic_root(seed)``. Files are ``00000.jpg`` (JPEG quality 95) and
    ``00000.png`` (mask, 0/255), each image between ``min_side`` and ``max_side`` pixels per side.
    The same seed gives byte-identical files. The set is generated in a temporary sibling folder
    that is renamed into place only when complete, with a marker file recording count, seed and
    version; a folder with a matching marker is reused, and one holding only generator files
    without a matching marker (other parameters, or a set whose writing was interrupted) is
    regenerated. Any other existing folder is refused rather than overwritten.
    """
    root = Path(root) if root is not None else default_synthetic_root(seed)
    marker = _synthetic_marker(count, seed, min_side, max_side)
    if _read_marker(root) == marker:
        return root
    if root.exists() and not (root.is_dir() and _holds_only_synthetic_files(root)):
        raise DatasetError(f"{root} exists and holds files other than a synthetic set; "
                           "choose another folder (or set MINIMENET_DATA) rather than overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        for index in range(count):
            image, mask = synthesize_sample(seed, index, min_side, max_side)
            Image.fromarray(image).save(staging / f"{index:05d}.jpg", quality=95)
            Image.fromarray(mask.astype(np.uint8) * 255).save(staging / f"{index:05d}.png")
        (staging / _SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=1))
        if root.exists():
            shutil.rmtree(root)  # only generator files, checked above
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root
