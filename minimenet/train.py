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
import time
from dataclasses import dataclass, fields
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: run folders are not locked
    fcntl = None

from . import backend, nn
from .data import (MSRA10K_VALIDATION_COUNT, DatasetError, SaliencyDataset, TrainingBatches, denormalize,
                   make_synthetic_dataset, read_stem_list, split_by_counts, split_by_fractions, split_msra10k)
from .checkpoint import (CheckpointError, examples, load_checkpoint, load_model, model_from_checkpoint, nonfinite,
                         save_checkpoint)
from .inference import evaluate, map_names
from .model import MEnet, MEnetConfig
from .optim import SGD
from .plot import atomic_write, plot_training_log, prediction_grid
from .tensor import Tensor

PRESET_DEFAULTS = {
    "paper": dict(iterations=100_000, batch_size=5, lr=0.1, warmup=0, clip_norm=0.0, val_every=5000,
                  checkpoint_every=1000),
    "tiny": dict(iterations=2000, batch_size=8, lr=0.1, warmup=0, clip_norm=0.0, val_every=500,
                 checkpoint_every=250),
}
# The defaults of the settings that do not depend on the preset.
DEFAULTS = dict(preset="tiny", variant="menet", metric_gradient="authors", background="authors",
                out="runs/menet-tiny", momentum=0.9, weight_decay=1e-8, log_every=10, seed=0, synthetic_count=1000)
LR_STEPS = (0.6, 0.9)   # fractions of the run where the lr is multiplied by LR_DECAY
LR_DECAY = 0.1
# Batch norm over fewer values per channel than this at the deepest level (S/32 x S/32, times the
# batch) has a gradient that can explode: at S 32 and batch 2 the first gradient norm reached 8e4
# on some batches against a median of 200 (25 at batch 4); the trainer warns.
MIN_DEEPEST_VALUES = 4
MSRA10K_SIZE = 9000     # more pairs than this get the paper's MSRA10K split

# The files of a run folder (besides .lock): a new run refuses a folder that holds any of them.
RUN_FILES = ("checkpoint.npz", "log.jsonl", "loss.png", "results.json", "predictions.png")


class ConfigError(ValueError):
    """A setting that cannot work (named by its command-line flag), or flags a resume does not take."""


class TrainingDiverged(RuntimeError):
    pass


class RunFolderError(RuntimeError):
    """The run folder holds another run, or another training is using it."""


def flag(name):
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Every setting of a run. None takes the default: PRESET_DEFAULTS for the preset's settings,
    DEFAULTS for the others, and for image_size and width the preset's network.
    ``given`` (not a field) names the settings the caller set; a resume compares those with the
    checkpoint's."""
    preset: str = None                # "tiny" | "paper"
    variant: str = None               # menet | ce-only | ce-plain (Table III)
    image_size: int = None            # None: the preset's network (MEnetConfig.PRESETS), likewise below
    width: int = None
    metric_gradient: str = None       # "authors" or "exact" (losses.metric_loss)
    background: str = None            # Eq. 5's reading for the "metric" map: "authors" or "paper" (model.metric_saliency)
    data: str = None                  # dataset folder; None = the built-in synthetic set
    out: str = None                   # checkpoints, log, pictures (runs/menet-tiny)
    iterations: int = None
    batch_size: int = None
    lr: float = None
    warmup: int = None                # iterations of linear lr warm-up from 0; 0 disables it
    clip_norm: float = None           # cap on the global gradient norm; 0 disables clipping
    momentum: float = None            # 0.9
    weight_decay: float = None        # 1e-8
    val_every: int = None
    checkpoint_every: int = None
    log_every: int = None             # 10
    seed: int = None                  # 0
    synthetic_count: int = None       # 1000
    test_list: str = None             # file of test stems, one per line (e.g. MSRA1K)
    val_count: int = None             # validation pairs; None: 5 % (500 for MSRA10K or with test_list), 0: none
    test_count: int = None            # test pairs; None: 10 % (the rest beside 9 000 for MSRA10K), 0: none

    def __post_init__(self):
        self.given = frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)
        preset = self.preset if self.preset is not None else DEFAULTS["preset"]
        if preset not in PRESET_DEFAULTS:
            raise ConfigError(f"unknown preset {preset!r}: choose one of {sorted(PRESET_DEFAULTS)} (--preset)")
        for name, value in {**DEFAULTS, **PRESET_DEFAULTS[preset]}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.validate()

    def validate(self):
        """Raise ConfigError, naming the flag, for a setting that cannot work."""
        def check(names, ok, what):
            for name in names:
                value = getattr(self, name)
                if value is None:
                    continue
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not (number and math.isfinite(value) and ok(value)):
                    raise ConfigError(f"{flag(name)} must be {what}, got {value!r}")
        check(("iterations", "batch_size", "val_every", "checkpoint_every", "log_every", "synthetic_count", "width"),
              lambda v: v == int(v) and v >= 1, "a whole number of at least 1")
        check(("warmup", "val_count", "test_count"), lambda v: v == int(v) and v >= 0, "a whole number of at least 0")
        check(("seed",), lambda v: v == int(v) and v >= 0, "a whole number of at least 0")
        check(("lr",), lambda v: v > 0, "a positive number")
        check(("clip_norm",), lambda v: v >= 0, "at least 0 (0 disables clipping)")
        check(("weight_decay",), lambda v: v >= 0, "at least 0")
        check(("momentum",), lambda v: 0 <= v < 1, "in [0, 1)")
        check(("image_size",), lambda v: v == int(v) and v >= 32 and v % 32 == 0,
              "a positive multiple of 32 (the network has five stride-2 levels)")
        if self.test_list is not None and self.test_count is not None:
            raise ConfigError("--test-count and --test-list exclude each other: the list sets the test split")
        try:
            self.model_config()
        except ValueError as exc:
            raise ConfigError(str(exc).replace("MEnetConfig: ", "").replace("_", "-")) from None

    def model_config(self):
        sizes = {k: getattr(self, k) for k in ("image_size", "width") if getattr(self, k) is not None}
        return MEnetConfig.preset(self.preset, variant=self.variant, metric_gradient=self.metric_gradient,
                                  background=self.background, **sizes)


# --- Data ----------------------------------------------------------------------------------------

def dataset_splits(cfg, stems):
    """{"train", "val", "test"} -> stems. Over 9 000 pairs (MSRA10K): the paper's split, 8 500 /
    500 / the rest, by a seeded shuffle; with ``test_list``, the stems it names (e.g. MSRA1K) are
    the test set and ``val_count`` (default 500, 5 % on a small set) of the rest the validation
    set; otherwise 85 / 5 / 10 %, at least one pair each. ``val_count`` and ``test_count`` set
    those sizes (0: no validation or no test), the rest trains."""
    n = len(stems)
    if cfg.test_list:
        val = cfg.val_count if cfg.val_count is not None else min(MSRA10K_VALIDATION_COUNT, max(1, round(0.05 * n)))
        return split_msra10k(stems, seed=cfg.seed, test_stems=read_stem_list(cfg.test_list), validation_count=val)
    if cfg.val_count is None and cfg.test_count is None:
        if n > MSRA10K_SIZE:
            return split_msra10k(stems, seed=cfg.seed)
        if n < 3:
            raise DatasetError(f"{n} pairs are too few for a training, a validation and a test pair; add pairs, "
                               "or set --val-count 0 (no validation) and/or --test-count 0 (no test report)")
        return split_by_fractions(stems, seed=cfg.seed)
    large = n > MSRA10K_SIZE
    val = cfg.val_count if cfg.val_count is not None else (MSRA10K_VALIDATION_COUNT if large else max(1, round(0.05 * n)))
    test = cfg.test_count if cfg.test_count is not None else (n - MSRA10K_SIZE if large else max(1, round(0.10 * n)))
    return split_by_counts(stems, {"train": None, "val": val, "test": test}, seed=cfg.seed)


def datasets(cfg):
    """(train, validation, test) subsets, as ``dataset_splits`` draws them; a split that cannot
    be made is a DatasetError that says which flag changes it."""
    root = cfg.data or make_synthetic_dataset(count=cfg.synthetic_count, seed=cfg.seed)
    dataset = SaliencyDataset(root)
    splits = dataset_splits(cfg, dataset.stems)
    return tuple(dataset.subset(splits[name]) for name in ("train", "val", "test"))


# --- Run folders ---------------------------------------------------------------------------------

class RunLock:
    """An exclusive lock on a run folder (its .lock file) while a training uses it: a second
    training on the same folder is refused instead of overwriting the first one's files. The
    operating system drops the lock when the process ends, however it ends."""

    def __init__(self, run):
        self.path = Path(run) / ".lock"
        self.handle = None

    def __enter__(self):
        if fcntl is None:
            return self
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            raise RunFolderError(f"another training is using {self.path.parent}"
                                 f"{f' (process {owner})' if owner else ''}; wait for it to end, or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()  # releases the lock
            self.handle = None


def _remove_temporary_files(run):
    """Temporary files left by a write that a kill interrupted (see plot.atomic_write)."""
    leftovers = [p for p in run.glob("*.tmp") if p.name.split(".tmp")[0].rsplit(".", 1)[0] in RUN_FILES]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def _truncate_log(log_path, iteration):
    """Keep the log rows up to ``iteration`` (the checkpoint's): the rows of the iterations after
    it are trained again on resume, and a row cut short by a kill is dropped."""
    if not log_path.exists():
        return 0
    kept, dropped = [], 0
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = record["iteration"] <= iteration
        except (ValueError, TypeError, KeyError):
            keep = False
        if keep:
            kept.append(line + "\n")
        else:
            dropped += bool(line.strip())
    if dropped:
        atomic_write(log_path, lambda handle: handle.write("".join(kept).encode()), sync=True)
    return dropped


def _same_data(a, b):
    if a is None or b is None:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def resume_config(saved, cfg, checkpoint_path):
    """The configuration of a resumed run: the checkpoint's, with ``cfg.out``. A setting that
    ``cfg`` was given (``cfg.given``) must equal the checkpoint's, except ``data`` when the saved
    dataset folder no longer exists (the dataset was moved); anything else is a ConfigError."""
    try:
        resumed = TrainConfig(**{**saved, "out": cfg.out})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint_path}: its training configuration is not one this minimenet takes "
                              f"({exc})") from None
    differences = []
    for name in sorted(cfg.given - {"out"}):
        new, old = getattr(cfg, name), getattr(resumed, name)
        if name == "data" and old is not None and new is not None and not Path(old).exists():
            resumed.data = new  # the dataset moved; the sampler checks that its size is the same
            continue
        if not (_same_data(new, old) if name in ("data", "test_list") else new == old):
            differences.append(f"{flag(name)} {new} (the run's: {old})")
    if differences:
        note = (" The run's length cannot change: the learning-rate schedule (steps at 60 % and 90 % of the run) "
                "is laid out over it." if "iterations" in cfg.given and cfg.iterations != resumed.iterations else "")
        raise ConfigError(f"--resume continues the run in {cfg.out} with its saved settings, and "
                          f"{'; '.join(differences)} differ from them.{note} Drop those flags to resume (a resume "
                          "takes --out, and --data only if the run's dataset folder has moved), or start a new run "
                          "with them: another --out, or --overwrite to replace this run")
    return resumed


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
    return f"{len(bad)} arrays became NaN or infinite ({examples(bad)})"


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
    leftovers = _remove_temporary_files(run)
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
        dropped = _truncate_log(log_path, start)
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
