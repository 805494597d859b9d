"""Where one training step (or, with ``--inference``, one inference batch) of the authors'
network spends its time, per op, on the CPU.

One step = forward (model + both losses), backward, SGD update, as in ``bench_train.py``.
One inference batch = ``MEnet.saliency_maps`` (eval forward without a graph, then the CE map
and both Eq. 5 maps), as ``bench_train.py`` times it; the maps after the network are one row.
Attribution, all by wall clock (``time.perf_counter``):

* forward: an op's array is computed just before ``Tensor.from_op`` records it, so each op is
  charged the time since the previous op was recorded (the model's Python between ops included);
* backward: each op's backward closure is timed as it runs; what ``Tensor.backward`` does
  around them (adding the gradients of tensors used twice, the graph walk) is "autograd";
* inside both, the convolution primitives of ``minimenet.conv`` (the forward, the input
  gradient, the weight gradient, and within each the im2col copies, ``im2col.block_columns``) are
  timed on their own and taken out of whatever called them, so "conv2d forward" is what remains
  around them (almost nothing) and "conv forward product" excludes its im2col. A transposed
  convolution's forward is the input-gradient primitive, its backward the other two. With
  several worker threads (``minimenet.threads``) the im2col copies of a layer run beside each
  other inside its primitive, so only those made on the main thread get their own row; the
  others count in their primitive's.

    python benchmarks/profile_step.py                         # paper preset, batch 5, 1 step after 1 warm-up
    python benchmarks/profile_step.py --preset tiny --batch 8 --steps 5
    python benchmarks/profile_step.py --inference --threads 1
"""
import argparse
import collections
import os
import platform
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
os.environ.setdefault("MINIMENET_DEVICE", "cpu")

import numpy  # noqa: E402

import minimenet  # noqa: E402
from minimenet import conv, im2col  # noqa: E402
from minimenet.tensor import Tensor  # noqa: E402

from bench_train import minimenet_runner, random_batch  # noqa: E402
from blas_threads import blas_threads, limit_blas  # noqa: E402

# (module, function name, the row it is charged to)
PRIMITIVES = [(im2col, "block_columns", "conv im2col"), (conv, "_forward", "conv forward product"),
              (conv, "_input_grad", "conv input grad"), (conv, "_weight_grad", "conv weight grad")]


class Profile:
    """Seconds per (op, phase), each nested timer's time taken out of the one around it."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.calls = collections.Counter()
        self.phase = None
        self._claimed = [0.0]  # time claimed by finished timers, per level of nesting
        self._mark = 0.0       # forward: when the previous op was recorded

    def timed(self, key, fn, *args, **kwargs):
        self._claimed.append(0.0)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        total = time.perf_counter() - start
        nested = self._claimed.pop()
        self._claimed[-1] += total
        self.seconds[key] += total - nested
        self.calls[key] += 1
        return result

    def start_phase(self, phase):
        self.phase = phase
        self._claimed = [0.0]
        self._mark = time.perf_counter()

    def record_forward(self, op):
        """Charge the time since the previous forward op to ``op``, less its timed primitives."""
        now = time.perf_counter()
        self.seconds[(op, self.phase)] += now - self._mark - self._claimed[-1]
        self.calls[(op, self.phase)] += 1
        self._claimed[-1] = 0.0
        self._mark = now


def install(profile):
    """Wrap Tensor.from_op (forward attribution, backward closures) and conv's primitives."""
    original_from_op = Tensor.from_op.__func__

    def from_op(cls, data, parents, backward, op):
        if profile.phase == "forward":
            profile.record_forward(op)
        return original_from_op(cls, data, parents, lambda g: profile.timed((op, "backward"), backward, g), op)
    Tensor.from_op = classmethod(from_op)
    for module, name, row in PRIMITIVES:
        original = getattr(module, name)

        def timed(*args, _f=original, _row=row, **kwargs):
            if threading.current_thread() is not threading.main_thread():  # one timer stack, the main thread's
                return _f(*args, **kwargs)
            return profile.timed((_row, profile.phase), _f, *args, **kwargs)
        setattr(module, name, timed)


def profiled_runner(preset, batch):
    """A random batch, ``bench_train``'s model and inference for it, and a Profile installed
    with its wall-clock counter."""
    images, masks = random_batch(batch, {"tiny": 64, "paper": 224}[preset])
    model, _, infer = minimenet_runner(preset, images, masks, 0.01)
    profile = Profile()
    install(profile)
    return images, masks, model, infer, profile, collections.Counter()


def profile_steps(preset, batch, steps, warmup):
    images, masks, model, _, profile, wall = profiled_runner(preset, batch)
    opt = minimenet.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-8,
                        multipliers=model.learning_rate_multipliers())
    x, m = minimenet.Tensor(images), masks
    for i in range(warmup + steps):
        if i == warmup:
            profile.seconds.clear(), profile.calls.clear()
        phases = []
        model.train()
        profile.start_phase("forward")
        t0 = time.perf_counter()
        loss, _ = model.loss(model(x), m)
        phases.append(("forward", time.perf_counter() - t0))
        opt.zero_grad()
        profile.start_phase("backward")
        t0 = time.perf_counter()
        loss.backward()
        phases.append(("backward", time.perf_counter() - t0))
        profile.start_phase("update")
        t0 = time.perf_counter()
        opt.step()
        phases.append(("update", time.perf_counter() - t0))
        profile.phase = None
        if i >= warmup:
            wall.update(dict(phases))
    return profile, wall


def profile_inference(preset, batch, steps, warmup):
    images, _, _, infer, profile, wall = profiled_runner(preset, batch)
    for i in range(warmup + steps):
        if i == warmup:
            profile.seconds.clear(), profile.calls.clear()
        profile.start_phase("forward")
        t0 = time.perf_counter()
        infer(images)
        if i >= warmup:
            wall["inference"] += time.perf_counter() - t0
        profile.phase = None
    return profile, wall


def table(profile, wall, steps):
    """Rows (op, phase, calls per step, ms per step, % of the step), largest first."""
    step_s = sum(wall.values()) / steps
    rows = [(op, phase, profile.calls[(op, phase)] / steps, s / steps) for (op, phase), s in profile.seconds.items()]
    if "inference" in wall:  # what follows the network's last op
        rows.append(("CE and Eq. 5 maps", "inference", 1, wall["inference"] / steps - sum(r[3] for r in rows)))
    else:
        rows.append(("autograd (graph walk, gradient sums)", "backward", 0,
                     wall["backward"] / steps - sum(r[3] for r in rows if r[1] == "backward")))
        rows.append(("SGD update", "update", 1, wall["update"] / steps))
    rows.sort(key=lambda r: -r[3])
    unit = "batch" if "inference" in wall else "step"
    lines = [f"| op | phase | calls | ms per {unit} | % of {unit} |", "|---|---|---|---|---|"]
    lines += [f"| {op} | {phase} | {calls:g} | {s * 1e3:.0f} | {100 * s / step_s:.1f} |" for op, phase, calls, s in rows]
    lines.append(f"| **{unit}** | | | **{step_s * 1e3:.0f}** | 100 |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=["tiny", "paper"])
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--steps", type=int, default=1, help="profiled steps (default 1)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, help="BLAS threads (default: what NumPy's BLAS uses)")
    p.add_argument("--inference", action="store_true", help="profile inference batches (saliency_maps) instead of training steps")
    args = p.parse_args(argv)
    if args.threads:
        limit_blas(args.threads)
    threads, blas = blas_threads()
    what = "inference batch(es)" if args.inference else "step(s)"
    print(f"# profile_step: {args.preset} preset, batch {args.batch}, {args.steps} {what} after {args.warmup} warm-up; "
          f"{platform.machine()} {os.cpu_count()} CPUs, numpy {numpy.__version__}, BLAS {blas} with {threads} threads; "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    run = profile_inference if args.inference else profile_steps
    profile, wall = run(args.preset, args.batch, args.steps, args.warmup)
    print(table(profile, wall, args.steps))
    if args.inference:
        print(f"# {wall['inference'] / args.steps / args.batch * 1e3:.0f} ms per image; "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        return
    print(f"# forward {wall['forward'] / args.steps:.2f} s, backward {wall['backward'] / args.steps:.2f} s, "
          f"update {wall['update'] / args.steps:.2f} s per step; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
