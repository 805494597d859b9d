"""Every setting of a training run, in one place.

``PRESETS`` holds one row per preset: the network (image size S and width w) and the solver.
``paper`` is the authors': SGD at lr 0.1, batch 5, 100 000 iterations (momentum 0.9 and weight
decay 1e-8 below, the schedule in ``train.learning_rate``). ``tiny`` is the same network and recipe
scaled for a CPU: a 64 x 64 network that trains in minutes on the built-in synthetic set.
``DEFAULTS`` holds the settings that do not depend on the preset; the network's variant, metric
gradient and Eq. 5 reading default to ``MEnetConfig``'s. ``TrainConfig`` is one run's settings,
and the training script's command-line flags are generated from its fields (``add_flags``).

Gradient clipping and warm-up are off by default: with the authors' metric gradient the network
trains at lr 0.1 without them (the README's "Training stability" table measures it).
"""
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from .checkpoint import CheckpointError
from .losses import METRIC_GRADIENTS
from .model import BACKGROUND_ESTIMATES, VARIANTS, MEnetConfig

NETWORK_SETTINGS = ("image_size", "width")
PRESETS = {
    "paper": dict(image_size=224, width=32, iterations=100_000, batch_size=5, lr=0.1, val_every=5000,
                  checkpoint_every=1000),
    "tiny": dict(image_size=64, width=4, iterations=2000, batch_size=8, lr=0.1, val_every=500,
                 checkpoint_every=250),
}
DEFAULTS = dict(preset="tiny", momentum=0.9, weight_decay=1e-8, warmup=0, clip_norm=0.0, log_every=10, seed=0,
                synthetic_count=1000)


class ConfigError(ValueError):
    """A setting that cannot work (named by its command-line flag), or flags a resume does not take."""


def flag(name):
    return "--" + name.replace("_", "-")


def network_config(preset, **overrides):
    """The ``MEnetConfig`` of a preset's network, with ``overrides`` (any MEnetConfig field)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    return MEnetConfig(**{**{k: PRESETS[preset][k] for k in NETWORK_SETTINGS}, **overrides})


def setting(help_text, choices=None):
    """A TrainConfig field: None until the caller or a default sets it; its flag's help and choices."""
    return field(default=None, metadata={"help": help_text, "choices": choices})


@dataclass
class TrainConfig:
    """Every setting of a run. None takes the default: the preset's row of PRESETS, then DEFAULTS,
    then the network's (MEnetConfig). ``given`` (not a field) names the settings the caller set; a
    resume compares those with the checkpoint's."""
    preset: str = setting("the network and recipe", tuple(PRESETS))
    variant: str = setting("Table III's ablations", VARIANTS)
    image_size: int = setting("S, a multiple of 32")
    width: int = setting("channels of the first block, w (level i has w 2^i)")
    metric_gradient: str = setting("the authors' metric gradient (centroids constant, normalisation passed straight "
                                   "through) or the exact gradient of Eq. 3", METRIC_GRADIENTS)
    background: str = setting("Eq. 5's background centroid for the metric map: the authors' border sample or the "
                              "paper text's mean over the pixels the CE head calls background (both are reported)",
                              BACKGROUND_ESTIMATES)
    data: str = setting("dataset folder, in any usual benchmark layout (MSRA10K, DUTS, ECSSD, HKU-IS, DUT-OMRON, "
                        "PASCAL-S, SOD, images/ + masks/); default: the built-in synthetic set")
    test_list: str = setting("file of test stems, one per line (e.g. MSRA1K, to hold it out exactly)")
    val_count: int = setting("validation pairs (default 5 %, at least 1; 500 for MSRA10K or with --test-list); 0: none")
    test_count: int = setting("test pairs (default 10 %, at least 1; the rest beside 9 000 for MSRA10K); 0: no test report")
    out: str = setting("run folder: checkpoint, log, pictures (default runs/menet-PRESET)")
    iterations: int = setting("SGD iterations; the lr falls tenfold at 60 % and 90 % of them")
    batch_size: int = setting("images per iteration")
    lr: float = setting("base learning rate")
    warmup: int = setting("iterations of linear learning-rate warm-up (0: none)")
    clip_norm: float = setting("cap on the global gradient norm (0: no clipping)")
    momentum: float = setting("SGD momentum")
    weight_decay: float = setting("L2 weight decay (none on the convolution biases, as the authors')")
    val_every: int = setting("iterations between validations")
    checkpoint_every: int = setting("iterations between checkpoints")
    log_every: int = setting("iterations between log rows")
    seed: int = setting("seed of the initial weights, the splits, the batches and the synthetic set")
    synthetic_count: int = setting("pairs in the built-in synthetic set")

    def __post_init__(self):
        self.given = frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)
        preset = self.preset if self.preset is not None else DEFAULTS["preset"]
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)} (--preset)")
        for name, value in {**DEFAULTS, **PRESETS[preset], "out": f"runs/menet-{preset}"}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        network = self.validate()
        for name in ("variant", "metric_gradient", "background"):
            setattr(self, name, getattr(network, name))

    def validate(self):
        """Raise ConfigError, naming the flag, for a setting that cannot work; return the network's
        MEnetConfig, whose own checks are among them."""
        def check(names, ok, what):
            for name in names:
                value = getattr(self, name)
                if value is None:
                    continue
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not (number and math.isfinite(value) and ok(value)):
                    raise ConfigError(f"{flag(name)} must be {what}, got {value!r}")
        check(("iterations", "batch_size", "val_every", "checkpoint_every", "log_every", "synthetic_count", "width",
               "image_size"), lambda v: v == int(v) and v >= 1, "a whole number of at least 1")
        check(("warmup", "val_count", "test_count", "seed"), lambda v: v == int(v) and v >= 0, "a whole number of at least 0")
        check(("lr",), lambda v: v > 0, "a positive number")
        check(("clip_norm",), lambda v: v >= 0, "at least 0 (0 disables clipping)")
        check(("weight_decay",), lambda v: v >= 0, "at least 0")
        check(("momentum",), lambda v: 0 <= v < 1, "in [0, 1)")
        if self.test_list is not None and self.test_count is not None:
            raise ConfigError("--test-count and --test-list exclude each other: the list sets the test split")
        try:
            return self.model_config()
        except ValueError as exc:  # MEnetConfig's own checks, named by the flag
            raise ConfigError("--" + str(exc).replace("MEnetConfig: ", "").replace("_", "-")) from None

    def model_config(self):
        network = {k: getattr(self, k) for k in ("image_size", "width", "variant", "metric_gradient", "background")
                   if getattr(self, k) is not None}
        return network_config(self.preset, **network)

    @classmethod
    def from_flags(cls, namespace):
        """The configuration of the flags ``add_flags`` made that were given on the command line."""
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls) if getattr(namespace, f.name) is not None})


def default_text(name):
    """The default of a setting, as its flag's help says it."""
    if name in PRESETS["tiny"]:
        values = {preset: f"{row[name]:,}" for preset, row in PRESETS.items()}
        if len(set(values.values())) == 1:
            return values["tiny"]
        return ", ".join(f"{preset} {value}" for preset, value in values.items())
    if name in DEFAULTS:
        return str(DEFAULTS[name])
    default = next((f.default for f in fields(MEnetConfig) if f.name == name), None)
    return None if default is None else str(default)


def add_flags(parser):
    """One flag per TrainConfig field (--batch-size for batch_size), with no argparse default:
    TrainConfig fills in the unset ones, and a resume compares only the flags that were given."""
    for f in fields(TrainConfig):
        default = default_text(f.name)
        help_text = f.metadata["help"] + (f" (default {default})" if default else "")
        parser.add_argument(flag(f.name), type=f.type, choices=f.metadata["choices"], help=help_text.replace("%", "%%"))
    return parser


def _same_folder(a, b):
    if a is None or b is None:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def resume_config(saved, cfg, source):
    """The configuration of a resumed run: ``saved`` (the checkpoint's, read from ``source``) with
    ``cfg.out``. A setting that ``cfg`` was given (``cfg.given``) must equal the saved one, except
    ``data`` when the saved dataset folder no longer exists (the dataset was moved); anything else
    is a ConfigError. A saved configuration this TrainConfig cannot take is a CheckpointError."""
    try:
        resumed = TrainConfig(**{**saved, "out": cfg.out})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: its training configuration is not one this minimenet takes ({exc})") from None
    differences = []
    for name in sorted(cfg.given - {"out"}):
        new, old = getattr(cfg, name), getattr(resumed, name)
        if name == "data" and old is not None and new is not None and not Path(old).exists():
            resumed.data = new  # the dataset moved; the sampler checks that its size is the same
            continue
        if not (_same_folder(new, old) if name in ("data", "test_list") else new == old):
            differences.append(f"{flag(name)} {new} (the run's: {old})")
    if differences:
        note = (" The run's length cannot change: the learning-rate schedule (steps at 60 % and 90 % of the run) "
                "is laid out over it." if "iterations" in cfg.given and cfg.iterations != resumed.iterations else "")
        raise ConfigError(f"--resume continues the run in {cfg.out} with its saved settings, and "
                          f"{'; '.join(differences)} differ from them.{note} Drop those flags to resume (a resume "
                          "takes --out, and --data only if the run's dataset folder has moved), or start a new run "
                          "with them: another --out, or --overwrite to replace this run")
    return resumed

