"""Peak memory of training steps, minimenet against PyTorch, each in a fresh process.

For each framework a child process builds the model, runs ``--steps`` training steps (as in
``bench_train.py``: forward, both losses, backward, SGD) on one batch and reports its peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), and the same for a child that
only builds the model and the batch, so the step's own share shows too.

    python benchmarks/peak_memory.py                          # paper preset, batch 5
    python benchmarks/peak_memory.py --preset tiny --batch 8
"""
import argparse
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def child(framework, preset, batch, steps, threads):
    """Runs in the child: build, step, print the peak RSS in MiB."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    sys.path.insert(0, HERE)
    os.environ["MINIMENET_DEVICE"] = "cpu"
    from bench_train import minimenet_runner, random_batch, torch_runner
    images, masks = random_batch(batch, {"tiny": 64, "paper": 224}[preset])
    if framework == "minimenet":
        _, step, _ = minimenet_runner(preset, images, masks, 0.01)
    else:
        import torch
        torch.set_num_threads(threads)
        _, step, _ = torch_runner(torch, preset, images, masks, 0.01, "cpu")
    for _ in range(steps):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_mib(framework, preset, batch, steps, threads):
    out = subprocess.run([sys.executable, __file__, "--child", framework, "--preset", preset, "--batch", str(batch),
                          "--steps", str(steps), "--threads", str(threads)], check=True, capture_output=True, text=True,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)})
    return float(out.stdout.split()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=["tiny", "paper"])
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="training steps (default 2: the second has the optimizer state)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS and torch threads, and so minimenet's worker threads (default 1)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.preset, args.batch, args.steps, args.threads)
    print(f"# peak_memory: {args.preset} preset, batch {args.batch}, {args.steps} training steps, one process per row, "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}")
    print("| framework | model + batch only | after the steps | the steps' share |\n|---|---|---|---|")
    for framework in ("minimenet", "torch"):
        try:
            base = peak_mib(framework, args.preset, args.batch, 0, args.threads)
            peak = peak_mib(framework, args.preset, args.batch, args.steps, args.threads)
        except subprocess.CalledProcessError as error:
            print(f"| {framework} | failed: {error.stderr.strip().splitlines()[-1]} | | |")
            continue
        print(f"| {framework} | {base:,.0f} MiB | {peak:,.0f} MiB | {peak - base:,.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
