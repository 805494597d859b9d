"""Train MEnet, then evaluate it on the held-out test split.

    python examples/train_msra10k.py                      # tiny preset on the built-in synthetic set (CPU, minutes)
    python examples/train_msra10k.py --data ~/MSRA10K     # a real MSRA10K folder (NAME.jpg beside NAME.png)
    python examples/train_msra10k.py --preset paper --data ~/MSRA10K   # the authors' full network and recipe (GPU)
    python examples/train_msra10k.py --resume             # continue an interrupted run in --out
    python examples/train_msra10k.py --overwrite          # start over in a folder that holds a run

Every hyper-parameter has a flag; unset ones take the preset's defaults (minimenet/train.py).
A run folder that holds a run is refused without --resume (continue it) or --overwrite (delete
it and start over). --resume continues with the run's saved settings: it takes --out (and --data
if the dataset folder has moved); any other flag that differs from the run's is refused.
"""
import argparse
import sys

from minimenet.checkpoint import CheckpointError
from minimenet.data import DatasetError
from minimenet.train import ConfigError, RunFolderError, TrainConfig, TrainingDiverged, test_report, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # No flag has a default here: TrainConfig fills in the unset ones, and a resume compares only
    # the flags that were given with the run's settings.
    p.add_argument("--preset", choices=["tiny", "paper"], help="tiny (default) or paper")
    p.add_argument("--variant", choices=["menet", "ce-only", "ce-plain"], help="Table III ablations (default menet)")
    p.add_argument("--data", help="dataset folder, in any usual benchmark layout (MSRA10K, DUTS, ECSSD, HKU-IS, DUT-OMRON, "
                        "PASCAL-S, SOD, images/ + masks/); default: built-in synthetic set")
    p.add_argument("--test-list", help="file of test stems, one per line (e.g. MSRA1K, to hold it out exactly)")
    p.add_argument("--val-count", type=int,
                   help="validation pairs (default 5 %%, at least 1; 500 for MSRA10K or with --test-list); 0: none")
    p.add_argument("--test-count", type=int,
                   help="test pairs (default 10 %%, at least 1; the rest beside 9 000 for MSRA10K); 0: no test report")
    p.add_argument("--out", help="run folder (default runs/menet-PRESET)")
    p.add_argument("--image-size", type=int, help="S, a multiple of 32 (default: the preset's)")
    p.add_argument("--width", type=int, help="channels of the first block, w (default: the preset's)")
    p.add_argument("--metric-gradient", choices=["authors", "exact"],
                   help="the authors' metric gradient (default: centroids constant, normalisation passed straight "
                        "through) or the exact gradient of Eq. 3")
    p.add_argument("--background", choices=["authors", "paper"],
                   help="Eq. 5's background centroid for the metric map: the authors' border sample (default) or the "
                        "paper text's mean over the pixels the CE head calls background (both are reported)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int, help="iterations of linear learning-rate warm-up (0: none)")
    p.add_argument("--clip-norm", type=float, help="cap on the global gradient norm (0: no clipping)")
    p.add_argument("--momentum", type=float, help="default 0.9")
    p.add_argument("--weight-decay", type=float, help="default 1e-8")
    p.add_argument("--val-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int, help="default 0")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    group.add_argument("--overwrite", action="store_true",
                       help="start over in an --out that holds a run, deleting its checkpoint, log and results")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("resume", "overwrite") and v is not None}
    options.setdefault("out", f"runs/menet-{args.preset or 'tiny'}")
    try:
        cfg = TrainConfig(**options)
        cfg = train(cfg, resume=args.resume, overwrite=args.overwrite)
        test_report(cfg)
    except (ConfigError, TrainingDiverged, CheckpointError, DatasetError, RunFolderError) as exc:
        sys.exit(f"error: {exc}")
    except OSError as exc:
        sys.exit(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
