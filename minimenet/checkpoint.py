"""Checkpoints: everything a run needs to continue, in one .npz, and the trained model back out of it.

A checkpoint holds the model's parameters and batch-norm statistics ("model/NAME"), the
optimiser's momentum ("optimizer/velocity.I") and a JSON "meta" record: the iteration, the run's
training configuration, the model's configuration and the batch sampler's position. It is
written atomically (a temporary file renamed into place), never with a NaN or an infinity in it,
and read back with a one-line CheckpointError for anything that is not such a file. Inference
(``load_model``) needs only this module, not the trainer.
"""
import json
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import backend
from .data import examples_of
from .model import MEnet, MEnetConfig
from .plot import atomic_write


class CheckpointError(RuntimeError):
    pass


def nonfinite(named_arrays):
    """Names of the floating-point arrays that hold a NaN or an infinity."""
    return [name for name, array in named_arrays
            if np.issubdtype(array.dtype, np.floating) and not bool(backend.array_module(array).isfinite(array).all())]


def save_checkpoint(path, model, optimizer, batches, iteration, cfg):
    """Everything a run needs to continue, in one .npz, written to a temporary file and renamed
    into place: an interrupted write never replaces the last good checkpoint. A state with a NaN
    or an infinity is refused (CheckpointError), so a checkpoint is always one to go on from."""
    path = Path(path)
    meta = dict(iteration=iteration, train_config=asdict(cfg), model_config=model.config.to_dict(),
                sampler=batches.state_dict(), format=1)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer/{k}": v for k, v in optimizer.state_dict().items()})
    bad = nonfinite(arrays.items())
    if bad:
        raise CheckpointError(f"not saving a checkpoint at iteration {iteration}: {len(bad)} arrays hold NaN or "
                              f"infinite values ({examples_of(bad)}); {path} is left as it was")
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda handle: np.savez(handle, **arrays), sync=True)


def load_checkpoint(path):
    """{"meta": dict, "model": state, "optimizer": state}, or a CheckpointError that says why not:
    missing, damaged, not a minimenet checkpoint, or holding NaN or infinite values."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train first, or point to the run folder's checkpoint.npz")
    damaged = (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except damaged as exc:
        raise CheckpointError(f"{path} is not a readable minimenet checkpoint (not an .npz archive, or truncated or "
                              f"corrupt: {exc}); restore a copy or start the run again") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} is a single NumPy array, not a minimenet checkpoint (an .npz written by training)")
    with archive:
        names = list(archive.files)
        if "meta" not in names:
            raise CheckpointError(f"{path} is an .npz archive but not a minimenet checkpoint: it has no 'meta' record "
                                  f"(arrays: {examples_of(names)}); use the checkpoint.npz of a training run")
        try:
            arrays = {name: archive[name] for name in names}
        except damaged as exc:
            raise CheckpointError(f"{path} is not a readable minimenet checkpoint (truncated or corrupt: {exc}). "
                                  "Checkpoints are written atomically, so the file was damaged after writing; "
                                  "restore a copy or start the run again") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        missing = [key for key in ("iteration", "train_config", "model_config", "sampler") if key not in meta]
    except (ValueError, TypeError, UnicodeDecodeError):
        meta, missing = None, ["a readable 'meta' record"]
    if missing:
        raise CheckpointError(f"{path} is not a minimenet checkpoint: it lacks {', '.join(missing)}")
    if meta.get("format", 1) > 1:
        raise CheckpointError(f"{path} was written by a newer minimenet (checkpoint format {meta['format']}); update minimenet")
    state = {"meta": meta, "model": {}, "optimizer": {}}
    for name, array in arrays.items():
        group, _, key = name.partition("/")
        if group not in ("model", "optimizer") or not key:
            raise CheckpointError(f"{path} is not a minimenet checkpoint: it holds an array {name!r}, "
                                  "neither model/... nor optimizer/...")
        state[group][key] = array
    bad = nonfinite(arrays.items())
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite values in {len(bad)} arrays ({examples_of(bad)}): it was "
                              "saved after the run diverged and cannot be used; train again with a lower --lr")
    return state


def model_from_checkpoint(state, path, model=None):
    """The checkpoint's weights in ``model`` (by default a new MEnet of its configuration)."""
    try:
        if model is None:
            model = MEnet(MEnetConfig(**state["meta"]["model_config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model configuration cannot be built by this minimenet ({exc}); "
                              "was it written by another version?") from None
    try:
        model.load_state_dict(state["model"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: its arrays do not match its model configuration ({exc.args[0]})") from None
    return model


def load_model(path):
    """The trained MEnet of a checkpoint, in eval mode, on the current backend."""
    return model_from_checkpoint(load_checkpoint(path), path).eval()
