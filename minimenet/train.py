"""Training MEnet: a plain SGD loop. Its settings, the presets included, are in
``minimenet/config.py``; this module is the loop around them.

The schedule is the authors': the lr divided by 10 at 60 % and 90 % of the run (their iterations
60 000 and 90 000 of 100 000; their third step falls on the last iteration), convolution biases at
twice the rate without weight decay, random crops (90-100 % of each side) and flips. Each
iteration logs its losses; checkpoints, validation and a Ctrl-C save keep a run resumable.
"""
import json
import math
import signal
import sys
import time
from pathlib import Path

from . import backend, nn
from .checkpoint import (CheckpointError, load_checkpoint, load_model, model_from_checkpoint, nonfinite,
                         save_checkpoint)
from .config import ConfigError, resume_config
from .data import DatasetError, SaliencyDataset, examples_of, TrainingBatches, denormalize, make_synthetic_dataset, training_splits
from .inference import evaluate, map_names
from .model import MEnet
from .optim import SGD
from .plot import atomic_write, plot_training_log, prediction_grid
from .runs import RUN_FILES, RunFolderError, RunLock, remove_temporary_files, truncate_log
from .tensor import Tensor

LR_STEPS = (0.6, 0.9)   # fractions of the run where the lr is multiplied by LR_DECAY
LR_DECAY = 0.1
# Batch norm over fewer values per channel than this at the deepest level (S/32 x S/32, times the
# batch) has a gradient that can explode: at S 32 and batch 2 the first gradient norm reached 8e4
# on some batches against a median of 200 (25 at batch 4); the trainer warns.
MIN_DEEPEST_VALUES = 4


class TrainingDiverged(RuntimeError):
    pass


# --- Data ----------------------------------------------------------------------------------------

def datasets(cfg):
    """(train, validation, test) subsets, as ``data.training_splits`` draws them; a split that cannot
    be made is a DatasetError that says which flag changes it."""
    root = cfg.data or make_synthetic_dataset(count=cfg.synthetic_count, seed=cfg.seed)
    dataset = SaliencyDataset(root)
    splits = training_splits(dataset.stems, seed=cfg.seed, val_count=cfg.val_count, test_count=cfg.test_count,
                             test_list=cfg.test_list)
    return tuple(dataset.subset(splits[name]) for name in ("train", "val", "test"))


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


def _divergence(model, optimizer, grad_norm):
    """What went non-finite after an update (gradients, parameters, batch-norm statistics or
    momentum), or None. One reduction over everything in the common case."""
    arrays = [p.data for p in model.parameters()] + [b for _, b in model.named_buffers()] + optimizer.velocities
    total = 0.0
    for array in arrays:
        total = total + array.sum(dtype="float64")
    if math.isfinite(grad_norm) and math.isfinite(float(total)):
        return None
    if not math.isfinite(grad_norm):
        return f"the gradient norm became {grad_norm}"
    named = [(name, p.data) for name, p in model.named_parameters()] + list(model.named_buffers())
    named += [(f"momentum of parameter {i}", v) for i, v in enumerate(optimizer.velocities)]
    bad = nonfinite(named)
    return f"{len(bad)} arrays became NaN or infinite ({examples_of(bad)})"


def train(cfg, resume=False, stream=sys.stdout, overwrite=False):
    """Train, validating and checkpointing along the way; returns the configuration it ran with
    (with ``resume``, the checkpoint's: see ``resume_config``).

    The run folder ``cfg.out`` is locked while training (RunFolderError if another training holds
    it). A folder that already holds a run is refused unless ``resume`` continues it or
    ``overwrite`` deletes its files (RUN_FILES) to start over. Ctrl-C (or SIGTERM) saves a
    checkpoint at the last completed iteration before stopping, so ``resume=True`` loses nothing;
    a resume drops the log rows after the checkpoint's iteration (they are trained again). A NaN
    or infinite loss, gradient, parameter or batch-norm statistic stops the run with
    TrainingDiverged, leaving the last good checkpoint in place.
    """
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    with RunLock(run):
        return _train_locked(cfg, run, resume, overwrite, stream)


def _train_locked(cfg, run, resume, overwrite, stream):
    checkpoint_path, log_path = run / "checkpoint.npz", run / "log.jsonl"
    progress = Progress(cfg.iterations, 0, stream)
    leftovers = remove_temporary_files(run)
    if leftovers:
        progress.message(f"removed {len(leftovers)} temporary files left by an interrupted write in {run}")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run, or start it over")
    if resume:
        state = load_checkpoint(checkpoint_path)
        cfg = resume_config(state["meta"]["train_config"], cfg, checkpoint_path)
        progress.total = cfg.iterations
    else:
        existing = [name for name in RUN_FILES if (run / name).exists()]
        if existing and not overwrite:
            resumable = ("continue it with --resume, " if "checkpoint.npz" in existing else
                         "it saved no checkpoint to --resume from; ")
            raise RunFolderError(f"{run} already holds a run ({', '.join(existing)}): {resumable}"
                                 "start over with --overwrite (deletes those files), or choose another --out")
        for name in existing:
            (run / name).unlink()
    train_set, val_set, test_set = datasets(cfg)
    whole = len(train_set) + len(val_set) + len(test_set)
    progress.message(f"data: {train_set.summary(whole)} -> {len(train_set)} train / {len(val_set)} validation / "
                     f"{len(test_set)} test pairs")
    nn.manual_seed(cfg.seed)
    model = MEnet(cfg.model_config())
    optimizer = SGD(model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, cfg.clip_norm or None,
                    model.learning_rate_multipliers())
    batches = TrainingBatches(train_set, cfg.batch_size, model.config.image_size, seed=cfg.seed)
    start = saved_at = 0
    if resume:
        model_from_checkpoint(state, checkpoint_path, model)
        try:
            optimizer.load_state_dict(state["optimizer"])
            batches.load_state_dict(state["meta"]["sampler"])
            start = saved_at = int(state["meta"]["iteration"])
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise CheckpointError(f"{checkpoint_path}: its optimiser or sampler state does not match its "
                                  f"configuration ({exc.args[0] if exc.args else exc})") from None
        dropped = truncate_log(log_path, start)
        progress.message(f"resumed from {checkpoint_path} at iteration {start}"
                         + (f"; dropped {dropped} log rows after it" if dropped else ""))
        if start >= cfg.iterations:
            progress.message(f"the run is complete ({start} of {cfg.iterations} iterations): nothing left to train")
    progress.message(f"MEnet {cfg.preset} ({model.num_parameters():,} parameters, variant {cfg.variant}) on "
                     f"{backend.device}; {cfg.iterations} iterations of batch {cfg.batch_size}; run folder {run}")
    progress.start = start
    deepest = cfg.batch_size * (model.config.image_size // 32) ** 2
    if deepest < MIN_DEEPEST_VALUES:
        progress.message(f"warning: the deepest level is {model.config.image_size // 32}x{model.config.image_size // 32}, so "
                         f"its batch norms see only {deepest} values per channel in a batch of {cfg.batch_size}: their "
                         f"gradient can reach 1e5 and wreck the first steps. Use --batch-size "
                         f"{-(-MIN_DEEPEST_VALUES // (model.config.image_size // 32) ** 2)} or more, or a larger --image-size")

    def diverged(what, iteration, detail=""):
        kept = (f"The last good checkpoint is kept at {checkpoint_path} (iteration {saved_at}); --resume "
                "continues from it." if saved_at else "No checkpoint had been saved yet, so there is none to resume from.")
        return TrainingDiverged(f"{what} at iteration {iteration + 1}{detail}. {kept} Lower --lr, or set --warmup or "
                                "--clip-norm, then start again (--overwrite, or another --out)")

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
            def write_row(row):
                log.write(json.dumps(row) + "\n")
                log.flush()  # a kill loses at most the row being written

            for iteration in range(start, cfg.iterations):
                optimizer.lr = learning_rate(cfg, iteration)
                images, masks = next(batches)
                out = model(Tensor(backend.xp.asarray(images)))
                loss, parts = model.loss(out, backend.xp.asarray(masks))
                if not math.isfinite(loss.item()):
                    raise diverged(f"the loss became {loss.item()}", iteration, f" ({parts})")
                optimizer.zero_grad()
                loss.backward()
                grad_norm = optimizer.step()
                problem = _divergence(model, optimizer, grad_norm)
                if problem:
                    raise diverged(problem, iteration)
                done = iteration + 1
                if done % cfg.log_every == 0 or done == cfg.iterations:
                    write_row(dict(iteration=done, loss=loss.item(), **parts, lr=optimizer.lr, grad_norm=grad_norm))
                    progress.update(iteration, parts, optimizer.lr)
                # The checkpoint comes before validation: a validation that fails costs nothing.
                if done % cfg.checkpoint_every == 0 or done == cfg.iterations or stop:
                    save_checkpoint(checkpoint_path, model, optimizer, batches, done, cfg)
                    saved_at = done
                if len(val_set) and (done % cfg.val_every == 0 or done == cfg.iterations):
                    scores = evaluate(model, val_set)
                    summary = {f"val_{name}_{key}": scores[name][key] for name in map_names(scores)
                               for key in ("max_f", "mae")}
                    write_row(dict(iteration=done, **summary))
                    progress.message("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
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
    for both maps, write results.json and a picture grid (image | ground truth | CE | metric).
    Returns the results, or None when the run has no test split (``test_count`` 0)."""
    run = Path(cfg.out)
    model = load_model(run / "checkpoint.npz")
    _, _, test_set = datasets(cfg)
    if not len(test_set):
        stream.write("no test split (--test-count 0): no test report\n")
        return None
    scores = evaluate(model, test_set, keep=examples)
    names = map_names(scores)
    results = {name: {k: scores[name][k] for k in ("max_f", "mean_f", "adaptive_f", "mae")} for name in names}
    results["test_images"] = scored = scores[names[0]]["count"]
    atomic_write(run / "results.json", lambda handle: handle.write(json.dumps(results, indent=1).encode()))
    rows = [(denormalize(image), mask, maps) for image, mask, maps in scores["examples"]]
    prediction_grid(rows, run / "predictions.png")
    skipped = f"; {len(test_set) - scored} could not be read" if scored < len(test_set) else ""
    stream.write(f"test split ({scored} images{skipped}), PySODMetrics convention:\n")
    for name in names:
        r = results[name]
        stream.write(f"  {name:>13} map: max F {r['max_f']:.4f}  adaptive F {r['adaptive_f']:.4f}  MAE {r['mae']:.4f}\n")
    stream.write(f"wrote {run / 'results.json'}, {run / 'predictions.png'}, {run / 'loss.png'}\n")
    return results
