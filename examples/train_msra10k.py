"""Train MEnet, then evaluate it on the held-out test split.

    python examples/train_msra10k.py                      # tiny preset on the built-in synthetic set (CPU, minutes)
    python examples/train_msra10k.py --data ~/MSRA10K     # a real MSRA10K folder (NAME.jpg beside NAME.png)
    python examples/train_msra10k.py --preset paper --data ~/MSRA10K   # the authors' full network and recipe (GPU)
    python examples/train_msra10k.py --resume             # continue an interrupted run in --out

Every hyper-parameter has a flag; unset ones take the preset's defaults (minimenet/train.py).
"""
import argparse
import sys

from minimenet.data import DatasetError
from minimenet.train import CheckpointError, TrainConfig, TrainingDiverged, test_report, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["tiny", "paper"], default="tiny")
    p.add_argument("--variant", choices=["menet", "ce-only", "ce-plain"], default="menet", help="Table III ablations")
    p.add_argument("--data", help="dataset folder (MSRA10K layout or images/ + masks/); default: built-in synthetic set")
    p.add_argument("--test-list", help="file of test stems, one per line (e.g. MSRA1K, to hold it out exactly)")
    p.add_argument("--out", help="run folder (default runs/menet-PRESET)")
    p.add_argument("--image-size", type=int, help="S, a multiple of 32 (default: the preset's)")
    p.add_argument("--width", type=int, help="channels of the first block, w (default: the preset's)")
    p.add_argument("--metric-gradient", choices=["authors", "exact"], default="authors",
                   help="the authors' metric gradient (centroids constant, normalisation passed straight through) "
                        "or the exact gradient of Eq. 3")
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int, help="iterations of linear learning-rate warm-up")
    p.add_argument("--clip-norm", type=float, help="cap on the global gradient norm (0: no clipping)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-8)
    p.add_argument("--val-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "resume" and v is not None}
    options.setdefault("out", f"runs/menet-{args.preset}")
    cfg = TrainConfig(**options)
    try:
        cfg = train(cfg, resume=args.resume)
    except (TrainingDiverged, CheckpointError, DatasetError) as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
    test_report(cfg)


if __name__ == "__main__":
    main()
