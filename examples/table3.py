"""Table III: the ablations trained with the same data, budget and seed, then evaluated on the
same held-out split, clean and distorted.

    python examples/table3.py                         # tiny preset on the built-in synthetic set
    python examples/table3.py --iterations 500        # a quicker look
    python examples/table3.py --preset paper --data ~/MSRA10K_Imgs_GT/Imgs --out runs/table3-paper
    python examples/table3.py --data ~/SOD --val-count 10 --test-count 50 --out runs/table3-sod

Variants (the paper's Table III): ce-plain (the CE head on the last up level, no scale maps),
ce-only (the scale maps, no metric loss) and menet (both losses). Each trains in OUT/VARIANT with
the trainer's checkpoints: stop the command at any point and run it again, and finished variants
are kept while an interrupted one resumes where it stopped. The table (max F / MAE of each map,
clean and under each distortion) is printed and written to OUT/table3.json and OUT/table3.md.
"""
import argparse
import json
import sys
from pathlib import Path

from minimenet.checkpoint import CheckpointError, load_checkpoint, load_model
from minimenet.data import DatasetError
from minimenet.distort import Distortion
from minimenet.inference import evaluate, map_names
from minimenet.plot import atomic_write
from minimenet.config import ConfigError, TrainConfig
from minimenet.runs import RunFolderError
from minimenet.train import TrainingDiverged, datasets, train

VARIANTS = ("ce-plain", "ce-only", "menet")
DISTORTIONS = ("awgn", "jpeg")


def train_or_resume(cfg):
    """Train ``cfg``'s run, resume it if it was interrupted, or keep it if it has finished."""
    checkpoint = Path(cfg.out) / "checkpoint.npz"
    if not checkpoint.exists():
        train(cfg)
        return
    done = load_checkpoint(checkpoint)["meta"]["iteration"]
    if done >= cfg.iterations:
        print(f"{cfg.variant}: already trained ({done} iterations) in {cfg.out}")
        return
    print(f"{cfg.variant}: resuming at iteration {done} of {cfg.iterations}")
    train(cfg, resume=True)


def table_rows(cfg, distortions):
    """{(variant, map): {condition: (max F, MAE)}} on the run's test split."""
    model = load_model(Path(cfg.out) / "checkpoint.npz")
    _, _, test_set = datasets(cfg)
    rows = {}
    for condition, distortion in [("clean", None)] + [(d.name, d) for d in distortions]:
        scores = evaluate(model, test_set, distortion=distortion)
        for kind in map_names(scores):
            if kind == "metric_paper":
                continue
            rows.setdefault(f"{cfg.variant} {kind}", {})[condition] = (scores[kind]["max_f"], scores[kind]["mae"])
    return rows, len(test_set)


def markdown(rows, conditions, images, cfg):
    lines = [f"Table III layout, max F / MAE on {images} held-out images ({cfg.preset} preset, {cfg.iterations} "
             f"iterations, seed {cfg.seed}, data: {cfg.data or 'built-in synthetic set'})", "",
             "| variant, map | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    for name, cells in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{cells[c][0]:.4f} / {cells[c][1]:.4f}" for c in conditions) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    p.add_argument("--data", help="dataset folder; default: the built-in synthetic set")
    p.add_argument("--out", default="runs/table3", help="one run folder per variant goes in here")
    p.add_argument("--iterations", type=int, help="training budget of every variant (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="one seed for data order, initialisation and distortions")
    p.add_argument("--image-size", type=int, help="S (default: the preset's)")
    p.add_argument("--width", type=int, help="w (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument("--val-count", type=int, help="validation pairs (default: the trainer's split)")
    p.add_argument("--test-count", type=int, help="held-out test pairs the table is measured on (default: the trainer's split)")
    args = p.parse_args(argv)
    out = Path(args.out)
    distortions = [Distortion(kind, None, args.seed) for kind in DISTORTIONS]
    conditions = ["clean"] + [d.name for d in distortions]
    options = {k: v for k, v in dict(preset=args.preset, data=args.data, iterations=args.iterations, seed=args.seed,
                                     image_size=args.image_size, width=args.width, batch_size=args.batch_size,
                                     val_count=args.val_count, test_count=args.test_count).items()
               if v is not None}
    rows = {}
    try:
        for variant in VARIANTS:
            cfg = TrainConfig(variant=variant, out=str(out / variant), **options)
            print(f"--- {variant} ---")
            train_or_resume(cfg)
            variant_rows, images = table_rows(cfg, distortions)
            rows.update(variant_rows)
    except (ConfigError, RunFolderError, CheckpointError, DatasetError, TrainingDiverged) as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("stopped: run the same command again to continue")
    table = markdown(rows, conditions, images, cfg)
    print("\n" + table)
    atomic_write(out / "table3.md", lambda handle: handle.write(table.encode()))
    payload = {name: {c: {"max_f": f, "mae": m} for c, (f, m) in cells.items()} for name, cells in rows.items()}
    atomic_write(out / "table3.json", lambda handle: handle.write(json.dumps(payload, indent=1).encode()))
    print(f"wrote {out / 'table3.md'} and {out / 'table3.json'}")


if __name__ == "__main__":
    main()
