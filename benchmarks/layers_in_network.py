"""Each BRC and BRD (batch norm -> ReLU -> convolution or transposed convolution) timed inside the
whole network, minimenet against PyTorch, grouped by shape.

``bench_ops.py --paper-layers`` times each distinct convolution alone; inside the network a layer
also reads its input from memory that the previous layer wrote, and minimenet's applies the batch
norm, the ReLU, the bias and a residual sum as it copies its blocks. Here the inference forward
(eval mode, no graph) of each framework is run as a whole and every one of its 58 BRCs and 11
BRDs timed as it runs: minimenet's ``fused`` ops (with their residual sums), PyTorch's
``torch_menet.BRC`` modules (batch norm, ReLU and convolution; its residual sums are outside
them). What neither covers (the stem's convolution, the heads, the maps' upsampling) is the
"outside" row. With ``--train`` it times minimenet's training step instead, each BRC and BRD's
forward and backward, summed by input resolution (PyTorch is not timed then).

    python benchmarks/layers_in_network.py --threads 1                  # paper preset, batch 5
    python benchmarks/layers_in_network.py --train --preset tiny --batch 8 --threads 1
"""
import argparse
import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
os.environ.setdefault("MINIMENET_DEVICE", "cpu")

import minimenet  # noqa: E402
from minimenet import model as mm_model  # noqa: E402

from bench_train import minimenet_runner, random_batch  # noqa: E402
from blas_threads import blas_threads, limit_blas  # noqa: E402

SIZES = {"tiny": 64, "paper": 224}


def timed_minimenet(seconds, calls, training):
    """Wrap the model's fused BRC and BRD ops so that each call (and, in training, its backward)
    adds its wall time to ``seconds[key]`` and counts in ``calls[key]``."""
    for name in ("batch_norm_relu_conv2d", "batch_norm_relu_conv_transpose2d"):
        op = getattr(mm_model, name + ("_training" if training else ""))

        def timed(x, *args, _op=op, _kind="BRD" if "transpose" in name else "BRC", **kwargs):
            w = args[4] if training else args[2]
            key = (_kind, tuple(x.shape[1:]), tuple(w.shape))
            start = time.perf_counter()
            y = _op(x, *args, **kwargs)
            seconds[key] += time.perf_counter() - start
            calls[key] += 1
            if training:
                backward = y._backward

                def timed_backward(g, _key=key):
                    start = time.perf_counter()
                    grads = backward(g)
                    seconds[_key] += time.perf_counter() - start
                    return grads
                y._backward = timed_backward
            return y
        setattr(mm_model, name + ("_training" if training else ""), timed)


def timed_torch(model, seconds, calls):
    """Forward hooks on every ``torch_menet.BRC`` module."""
    import torch_menet
    starts = {}
    for module in model.modules():
        if isinstance(module, torch_menet.BRC):
            def before(m, inputs):
                starts[id(m)] = time.perf_counter()

            def after(m, inputs, output):
                key = ("BRD" if "Transpose" in type(m.conv).__name__ else "BRC", tuple(inputs[0].shape[1:]), tuple(m.conv.weight.shape))
                seconds[key] += time.perf_counter() - starts[id(m)]
                calls[key] += 1
            module.register_forward_pre_hook(before)
            module.register_forward_hook(after)


def run(fn, warmup, repeats, seconds, calls):
    """Seconds per call of fn; ``seconds`` and ``calls`` cleared after the warm-up and then
    divided by the repeats (per call of fn)."""
    for _ in range(warmup):
        fn()
    seconds.clear()
    calls.clear()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    for key in seconds:
        seconds[key] /= repeats
        calls[key] //= repeats
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(SIZES), default="paper")
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--threads", type=int, help="BLAS and torch threads (default: what NumPy's BLAS uses)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train", action="store_true", help="minimenet's training step instead, by input resolution")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        limit_blas(args.threads)
    threads, blas = blas_threads()
    print(f"# layers_in_network: {args.preset} preset, batch {args.batch}, {'training step' if args.train else 'inference forward'}; "
          f"BLAS {blas} with {threads} threads; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    images, masks = random_batch(args.batch, SIZES[args.preset])
    model, step, _ = minimenet_runner(args.preset, images, masks, 0.01)
    mm, mm_calls = collections.Counter(), collections.Counter()
    timed_minimenet(mm, mm_calls, args.train)
    if args.train:
        total = run(step, args.warmup, args.repeats, mm, mm_calls)
        by_size = collections.Counter()
        for (_, shape, _), s in mm.items():
            by_size[shape[1:]] += s
        print("| input size | BRC and BRD forward + backward, ms a step |\n|---|---|")
        for size, s in sorted(by_size.items(), key=lambda item: -item[0][0]):
            print(f"| {size[0]} x {size[1]} | {s * 1e3:.1f} |")
        print(f"| outside them | {(total - sum(mm.values())) * 1e3:.1f} |\n| **step** | **{total * 1e3:.1f}** |")
        return
    model.eval()
    x = minimenet.Tensor(images)
    with minimenet.no_grad():
        mm_total = run(lambda: model(x), args.warmup, args.repeats, mm, mm_calls)
    pt, pt_calls, pt_total = collections.Counter(), collections.Counter(), None
    if not args.no_torch:
        try:
            import torch
            import torch_menet
        except ImportError:
            torch = None
        if torch is not None:
            torch.set_num_threads(threads)
            tm = torch_menet.build(args.preset).eval()
            timed_torch(tm, pt, pt_calls)
            tx = torch.from_numpy(images)
            with torch.no_grad():
                pt_total = run(lambda: tm(tx), args.warmup, args.repeats, pt, pt_calls)
    print("| layer | input | weight | count | minimenet ms | PyTorch ms | ratio | difference ms |\n|---|---|---|---|---|---|---|---|")
    for key in sorted(mm, key=lambda k: -(mm[k] - pt.get(k, 0.0))):
        kind, shape, w_shape = key
        both = f"{pt[key] * 1e3:.1f} | {mm[key] / pt[key]:.2f} | {(mm[key] - pt[key]) * 1e3:+.1f}" if key in pt else "- | - | -"
        print(f"| {kind} | {shape} | {w_shape} | {mm_calls[key]} | {mm[key] * 1e3:.1f} | {both} |")
    layers_mm, layers_pt = sum(mm.values()), sum(pt.values())
    print(f"| all BRCs and BRDs | | | | {layers_mm * 1e3:.1f} | " + (f"{layers_pt * 1e3:.1f} | {layers_mm / layers_pt:.2f} | "
          f"{(layers_mm - layers_pt) * 1e3:+.1f} |" if pt else "- | - | - |"))
    print(f"| outside them | | | | {(mm_total - layers_mm) * 1e3:.1f} | "
          + (f"{(pt_total - layers_pt) * 1e3:.1f} | | |" if pt else "- | | |"))
    print(f"| **forward** | | | | **{mm_total * 1e3:.1f}** | " + (f"**{pt_total * 1e3:.1f}** | {mm_total / pt_total:.2f} | |" if pt else "- | | |"))


if __name__ == "__main__":
    main()
