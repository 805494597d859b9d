"""Training MEnet: a plain SGD loop with its configuration at the top.

The ``paper`` preset is the authors' solver: SGD, lr 0.1, momentum 0.9, weight decay 1e-8,
batch 5, 100 000 iterations with the lr divided by 10 at 60 % and 90 % of the run (their
iterations 60 000 and 90 000; their third step falls on the last iteration), convolution biases
at twice the rate without weight decay, random crops (90-100 % of each side) and flips. The
``tiny`` preset is the same network and recipe scaled for a CPU: a 64 x 64 network that trains
in minutes on the built-in synthetic set.

Gradient clipping and warm-up are off by default: with the authors' metric gradient the
network trains at lr 0.1 without them (the README's "Training stability" table measures it).
They remain available as ``clip_norm`` and ``warmup``.
"""
import json
import math
import os
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import backend, nn
from .data import (SaliencyDataset, TrainingBatches, denormalize, make_synthetic_dataset, read_stem_list,
                   split_by_fractions, split_msra10k)
from .inference import evaluate, map_names
from .model import MEnet, MEnetConfig
from .optim import SGD
from .plot import plot_training_log, prediction_grid
from .tensor import Tensor

PRESET_DEFAULTS = {
    "paper": dict(iterations=100_000, batch_size=5, lr=0.1, warmup=0, clip_norm=0.0, val_every=5000,
                  checkpoint_every=1000),
    "tiny": dict(iterations=2000, batch_size=8, lr=0.1, warmup=0, clip_norm=0.0, val_every=500,
                 checkpoint_every=250),
}
LR_STEPS = (0.6, 0.9)   # fractions of the run where the lr is multiplied by LR_DECAY
LR_DECAY = 0.1


@dataclass
class TrainConfig:
    preset: str = "tiny"
    variant: str = "menet"            # menet | ce-only | ce-plain (Table III)
    image_size: int = None            # None: the preset's network (MEnetConfig.PRESETS), likewise below
    width: int = None
    metric_gradient: str = "authors"  # "authors" or "exact" (losses.metric_loss)
    data: str = None                  # dataset folder; None = the built-in synthetic set
    out: str = "runs/menet-tiny"      # checkpoints, log, pictures
    iterations: int = None            # None: the preset's value (PRESET_DEFAULTS), likewise below
    batch_size: int = None
    lr: float = None
    warmup: int = None                # iterations of linear lr warm-up from 0; 0 disables it
    clip_norm: float = None           # cap on the global gradient norm; 0 disables clipping
    momentum: float = 0.9
    weight_decay: float = 1e-8
    val_every: int = None
    checkpoint_every: int = None
    log_every: int = 10
    seed: int = 0
    synthetic_count: int = 1000
    test_list: str = None             # file of test stems, one per line (e.g. MSRA1K)

    def __post_init__(self):
        if self.preset not in PRESET_DEFAULTS:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {sorted(PRESET_DEFAULTS)}")
        for name, value in PRESET_DEFAULTS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def model_config(self):
        sizes = {k: getattr(self, k) for k in ("image_size", "width") if getattr(self, k) is not None}
        return MEnetConfig.preset(self.preset, variant=self.variant, metric_gradient=self.metric_gradient, **sizes)


class TrainingDiverged(RuntimeError):
    pass


class CheckpointError(RuntimeError):
    pass


# --- Data ----------------------------------------------------------------------------------------

def datasets(cfg):
    """(train, validation, test) subsets. A folder of more than 9 000 pairs (MSRA10K) gets the
    paper's split, 8 500 / 500 / the rest, by a seeded shuffle, or with ``test_list`` the stems it
    names (e.g. MSRA1K) as the test set; smaller sets are split 85 / 5 / 10 %."""
    root = cfg.data or make_synthetic_dataset(count=cfg.synthetic_count, seed=cfg.seed)
    dataset = SaliencyDataset(root)
    if cfg.test_list or len(dataset) > 9000:
        test_stems = read_stem_list(cfg.test_list) if cfg.test_list else None
        splits = split_msra10k(dataset.stems, seed=cfg.seed, test_stems=test_stems)
    else:
        splits = split_by_fractions(dataset.stems, seed=cfg.seed)
    return tuple(dataset.subset(splits[name]) for name in ("train", "val", "test"))


# --- Checkpoints ---------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, batches, iteration, cfg):
    """Everything a run needs to continue, in one .npz, written to a temporary file and renamed
    into place: an interrupted write never replaces the last good checkpoint."""
    path = Path(path)
    meta = dict(iteration=iteration, train_config=asdict(cfg), model_config=model.config.to_dict(),
                sampler=batches.state_dict(), format=1)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(path):
    """{"meta": dict, "model": state, "optimizer": state}, or a CheckpointError that says why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train first, or point to the run folder's checkpoint.npz")
    try:
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable minimenet checkpoint (truncated or corrupt: {exc}). "
                              "Checkpoints are written atomically, so the file was damaged after writing; "
                              "restore a copy or start the run again") from None
    state = {"meta": meta, "model": {}, "optimizer": {}}
    for name, array in arrays.items():
        group, key = name.split("/", 1)
        state[group][key] = array
    return state


def load_model(path):
    """The trained MEnet of a checkpoint, in eval mode, on the current backend."""
    state = load_checkpoint(path)
    model = MEnet(MEnetConfig(**state["meta"]["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


# --- Progress and pictures -----------------------------------------------------------------------

def _duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """One status line: iteration, each loss term, it/s and ETA; rewritten in place on a terminal."""

    def __init__(self, total, start, stream=sys.stdout):
        self.total, self.start, self.stream = total, start, stream
        self.t0 = time.time()
        self.tty = stream.isatty()

    def update(self, iteration, parts, lr):
        done = iteration + 1 - self.start
        rate = done / max(time.time() - self.t0, 1e-9)
        terms = " ".join(f"{k} {v:+.4f}" for k, v in parts.items())
        line = (f"it {iteration + 1}/{self.total} | {terms} | lr {lr:.3g} | {rate:.1f} it/s | "
                f"ETA {_duration((self.total - iteration - 1) / rate)}")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def message(self, text):
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


# --- The loop ------------------------------------------------------------------------------------

def learning_rate(cfg, iteration):
    """The authors' multistep schedule: lr, times LR_DECAY at each of LR_STEPS of the run; with
    ``warmup``, a linear ramp from lr / warmup over the first ``warmup`` iterations."""
    steps = sum(iteration >= round(fraction * cfg.iterations) for fraction in LR_STEPS)
    ramp = min(1.0, (iteration + 1) / cfg.warmup) if cfg.warmup else 1.0
    return cfg.lr * LR_DECAY ** steps * ramp


def train(cfg, resume=False, stream=sys.stdout):
    """Train, validating and checkpointing along the way; returns the configuration it ran with
    (with ``resume``, the checkpoint's, apart from ``iterations`` and ``out``).

    Ctrl-C (or SIGTERM) saves a checkpoint at the last completed iteration before stopping, so
    ``resume=True`` loses nothing. A NaN or infinite loss stops the run with TrainingDiverged,
    leaving the last good checkpoint in place.
    """
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    checkpoint_path, log_path = run / "checkpoint.npz", run / "log.jsonl"
    progress = Progress(cfg.iterations, 0, stream)

    if resume:
        state = load_checkpoint(checkpoint_path)
        saved = state["meta"]["train_config"]
        cfg = TrainConfig(**{**saved, "iterations": cfg.iterations, "out": cfg.out})
    train_set, val_set, _ = datasets(cfg)
    progress.message(f"data: {train_set.summary()} -> {len(train_set)} train / {len(val_set)} validation pairs")
    nn.manual_seed(cfg.seed)
    model = MEnet(cfg.model_config())
    optimizer = SGD(model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, cfg.clip_norm or None,
                    model.learning_rate_multipliers())
    batches = TrainingBatches(train_set, cfg.batch_size, model.config.image_size, seed=cfg.seed)
    start = 0
    if resume:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batches.load_state_dict(state["meta"]["sampler"])
        start = state["meta"]["iteration"]
        progress.message(f"resumed from {checkpoint_path} at iteration {start}")
    else:
        log_path.unlink(missing_ok=True)
    progress.message(f"MEnet {cfg.preset} ({model.num_parameters():,} parameters, variant {cfg.variant}) on "
                     f"{backend.device}; {cfg.iterations} iterations of batch {cfg.batch_size}; run folder {run}")
    progress.start = start

    # Ctrl-C and SIGTERM only raise a flag: the run stops at the end of the current iteration,
    # so the checkpoint it saves is consistent. A second Ctrl-C stops at once.
    stop = []

    def request_stop(signum, _frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)
        progress.message(f"{stop[0]}: stopping after this iteration (Ctrl-C again to stop now, without saving)")
    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(log_path, "a") as log:
            for iteration in range(start, cfg.iterations):
                optimizer.lr = learning_rate(cfg, iteration)
                images, masks = next(batches)
                out = model(Tensor(backend.xp.asarray(images)))
                loss, parts = model.loss(out, backend.xp.asarray(masks))
                if not math.isfinite(loss.item()):
                    raise TrainingDiverged(
                        f"the loss became {loss.item()} at iteration {iteration + 1} ({parts}). The last good "
                        f"checkpoint is kept at {checkpoint_path}. Lower --lr, or set --warmup or --clip-norm, "
                        "then start again (or --resume to continue from the checkpoint)")
                optimizer.zero_grad()
                loss.backward()
                grad_norm = optimizer.step()
                done = iteration + 1
                if done % cfg.log_every == 0 or done == cfg.iterations:
                    log.write(json.dumps(dict(iteration=done, loss=loss.item(), **parts, lr=optimizer.lr, grad_norm=grad_norm)) + "\n")
                    log.flush()
                    progress.update(iteration, parts, optimizer.lr)
                if done % cfg.val_every == 0 or done == cfg.iterations:
                    scores = evaluate(model, val_set)
                    summary = {f"val_{name}_{key}": scores[name][key] for name in map_names(scores)
                               for key in ("max_f", "mae")}
                    log.write(json.dumps(dict(iteration=done, **summary)) + "\n")
                    progress.message("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
                if done % cfg.checkpoint_every == 0 or done == cfg.iterations or stop:
                    save_checkpoint(checkpoint_path, model, optimizer, batches, done, cfg)
                if stop:
                    progress.message(f"stopped by {stop[0]}: checkpoint saved at iteration {done}; continue with --resume")
                    raise KeyboardInterrupt(stop[0])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    plot_training_log(log_path, run / "loss.png")
    return cfg


def test_report(cfg, examples=6, stream=sys.stdout):
    """Evaluate the run's checkpoint on the held-out test split: print max F, adaptive F and MAE
    for both maps, write results.json and a picture grid (image | ground truth | CE | metric)."""
    run = Path(cfg.out)
    model = load_model(run / "checkpoint.npz")
    _, _, test_set = datasets(cfg)
    scores = evaluate(model, test_set, keep=examples)
    names = map_names(scores)
    results = {name: {k: scores[name][k] for k in ("max_f", "mean_f", "adaptive_f", "mae")} for name in names}
    results["test_images"] = len(test_set)
    (run / "results.json").write_text(json.dumps(results, indent=1))
    rows = [(denormalize(image), mask, maps) for image, mask, maps in scores["examples"]]
    prediction_grid(rows, run / "predictions.png")
    stream.write(f"test split ({len(test_set)} images), PySODMetrics convention:\n")
    for name in names:
        r = results[name]
        stream.write(f"  {name:>13} map: max F {r['max_f']:.4f}  adaptive F {r['adaptive_f']:.4f}  MAE {r['mae']:.4f}\n")
    stream.write(f"wrote {run / 'results.json'}, {run / 'predictions.png'}, {run / 'loss.png'}\n")
    return results
