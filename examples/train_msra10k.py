"""Train MEnet, then evaluate it on the held-out test split.

    python examples/train_msra10k.py                      # tiny preset on the built-in synthetic set (CPU, minutes)
    python examples/train_msra10k.py --data ~/MSRA10K     # a real MSRA10K folder (NAME.jpg beside NAME.png)
    python examples/train_msra10k.py --preset paper --data ~/MSRA10K   # the authors' full network and recipe (GPU)
    python examples/train_msra10k.py --resume             # continue an interrupted run in --out
    python examples/train_msra10k.py --overwrite          # start over in a folder that holds a run

Every setting has a flag; unset ones take the preset's defaults (minimenet/config.py).
A run folder that holds a run is refused without --resume (continue it) or --overwrite (delete
it and start over). --resume continues with the run's saved settings: it takes --out (and --data
if the dataset folder has moved); any other flag that differs from the run's is refused.
"""
import argparse
import sys

from minimenet.checkpoint import CheckpointError
from minimenet.config import ConfigError, TrainConfig, add_flags
from minimenet.data import DatasetError
from minimenet.runs import RunFolderError
from minimenet.train import TrainingDiverged, test_report, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p)  # one flag per setting of minimenet.config.TrainConfig
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    group.add_argument("--overwrite", action="store_true",
                       help="start over in an --out that holds a run, deleting its checkpoint, log and results")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = train(TrainConfig.from_flags(args), resume=args.resume, overwrite=args.overwrite)
        test_report(cfg)
    except (ConfigError, TrainingDiverged, CheckpointError, DatasetError, RunFolderError) as exc:
        sys.exit(f"error: {exc}")
    except OSError as exc:
        sys.exit(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
