"""Benchmark (not a test): conv2d and conv_transpose2d forward + backward, float32, MEnet shapes.

For each shape it times, on the CPU:
  * minimenet: ``y = minimenet.conv2d(x, w, stride=, padding=)`` (or ``conv_transpose2d``) on
    Tensors with requires_grad, then ``y.backward(g)`` with a fixed gradient g;
  * PyTorch (only when it imports; the library itself never uses it): the same with
    ``torch.nn.functional`` on the same arrays, with ``torch.set_num_threads`` set to the number
    of threads NumPy's BLAS uses.
Times are the median of ``--repeats`` calls after ``--warmup`` calls, in milliseconds.

    python benchmarks/bench_ops.py                 # default shapes (tiny preset + a few paper ones)
    python benchmarks/bench_ops.py --repeats 20 --only deconv
    python benchmarks/bench_ops.py --primitives    # also time conv.py's NumPy primitives one by one
    python benchmarks/bench_ops.py --paper-layers  # every distinct layer of the paper network, forward, times its count

``--paper-layers`` times the forward alone (inference's work: a transposed convolution's is the
input-gradient primitive) of each distinct convolution of the authors' paper network at batch 5
(``bench_kernels.paper_layers``; the 7 x 7 expand counts as a second 7 x 7 squeeze, the
convolution it is the adjoint of), and weighs it by how many times the network has it.
"""
import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("MINIMENET_DEVICE", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy  # noqa: E402

import minimenet  # noqa: E402
from minimenet import conv_cpu as mconv_cpu, winograd  # noqa: E402
from minimenet.conv_geometry import ConvGeometry  # noqa: E402
from minimenet.conv_geometry import output_size  # noqa: E402

# (name, kind, batch, c_in, c_out, size, kernel, stride, padding)
# kind "conv": x (B, c_in, size, size), w (c_out, c_in, k, k)
# kind "deconv": x (B, c_in, size, size), w (c_in, c_out, k, k) (PyTorch's layout)
SHAPES = [
    # tiny preset (S = 64, w = 4: widths 4..128, k = 2), batch 8
    ("stem 3x3      3->4   64", "conv", 8, 3, 4, 64, 3, 1, 1),
    ("e0 3x3        4->4   64", "conv", 8, 4, 4, 64, 3, 1, 1),
    ("down1 3x3/2   4->8   64", "conv", 8, 4, 8, 64, 3, 2, 1),
    ("down1 1x1/2   4->8   64", "conv", 8, 4, 8, 64, 1, 2, 0),
    ("e1 3x3        8->8   32", "conv", 8, 8, 8, 32, 3, 1, 1),
    ("down3 3x3/2  16->32  16", "conv", 8, 16, 32, 16, 3, 2, 1),
    ("e3 3x3       32->32   8", "conv", 8, 32, 32, 8, 3, 1, 1),
    ("squeeze 2x2 128->128  2", "conv", 8, 128, 128, 2, 2, 1, 0),
    ("map e0 3x3    4->1   64", "conv", 8, 4, 1, 64, 3, 1, 1),
    ("feature      13->16  64", "conv", 8, 13, 16, 64, 3, 1, 1),
    ("CE head      13->2   64", "conv", 8, 13, 2, 64, 3, 1, 1),
    ("expand 2x2T 128->128  1", "deconv", 8, 128, 128, 1, 2, 1, 0),
    ("up4 4x4/2T  256->64   2", "deconv", 8, 256, 64, 2, 4, 2, 1),
    ("up4 2x2/2T  256->64   2", "deconv", 8, 256, 64, 2, 2, 2, 0),
    ("up1 4x4/2T   16->8   16", "deconv", 8, 16, 8, 16, 4, 2, 1),
    ("up0 4x4/2T    8->4   32", "deconv", 8, 8, 4, 32, 4, 2, 1),
    ("up0 2x2/2T    8->4   32", "deconv", 8, 8, 4, 32, 2, 2, 0),
]
PAPER_SHAPES = [
    # paper preset (S = 224, w = 32: widths 32..1024, k = 7), batch 5: the heaviest of each kind
    ("P e0 3x3 32->32 224", "conv", 5, 32, 32, 224, 3, 1, 1),
    ("P down1 3x3/2 32->64 224", "conv", 5, 32, 64, 224, 3, 2, 1),
    ("P e4 3x3 512->512 14", "conv", 5, 512, 512, 14, 3, 1, 1),
    ("P squeeze 7x7 1024 7", "conv", 5, 1024, 1024, 7, 7, 1, 0),
    ("P feature 13->16 224", "conv", 5, 13, 16, 224, 3, 1, 1),
    ("P up0 4x4/2T 64->32 112", "deconv", 5, 64, 32, 112, 4, 2, 1),
    ("P up0 2x2/2T 64->32 112", "deconv", 5, 64, 32, 112, 2, 2, 0),
    ("P expand 7x7T 1024 1", "deconv", 5, 1024, 1024, 1, 7, 1, 0),
]


from blas_threads import blas_threads, limit_blas  # noqa: E402


def time_call(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def make_arrays(shape, seed=0):
    _, kind, b, ci, co, size, k, s, p = shape
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((b, ci, size, size), dtype=numpy.float32)
    if kind == "conv":
        w = rng.standard_normal((co, ci, k, k), dtype=numpy.float32) * 0.1
        out = output_size(size, k, s, p)
    else:
        w = rng.standard_normal((ci, co, k, k), dtype=numpy.float32) * 0.1
        out = (size - 1) * s - 2 * p + k
    g = rng.standard_normal((b, co, out, out), dtype=numpy.float32)
    return x, w, g


def minimenet_fns(shape, x, w, g):
    _, kind, *_, s, p = shape
    op = minimenet.conv2d if kind == "conv" else minimenet.conv_transpose2d
    xt = minimenet.Tensor(x, requires_grad=True)
    wt = minimenet.Tensor(w, requires_grad=True)

    def forward():
        with minimenet.no_grad():
            return op(xt, wt, stride=s, padding=p)

    def forward_backward():
        xt.grad = wt.grad = None
        y = op(xt, wt, stride=s, padding=p)
        y.backward(g)
        return xt.grad, wt.grad
    return forward, forward_backward


def torch_fns(torch, shape, x, w, g):
    _, kind, *_, s, p = shape
    F = torch.nn.functional
    op = F.conv2d if kind == "conv" else F.conv_transpose2d
    xt = torch.from_numpy(x.copy()).requires_grad_()
    wt = torch.from_numpy(w.copy()).requires_grad_()
    gt = torch.from_numpy(g.copy())

    def forward():
        with torch.no_grad():
            return op(xt, wt, stride=s, padding=p)

    def forward_backward():
        xt.grad = wt.grad = None
        y = op(xt, wt, stride=s, padding=p)
        y.backward(gt)
        return xt.grad, wt.grad
    return forward, forward_backward


def check_agreement(torch, shape, x, w, g):
    """Largest relative difference between minimenet's and torch's y, dx, dw (a sanity check)."""
    fm, fbm = minimenet_fns(shape, x, w, g)
    ft, fbt = torch_fns(torch, shape, x, w, g)
    pairs = [(fm().data, ft().numpy())] + [(a, b.numpy()) for a, b in zip(fbm(), fbt())]
    return max(float(numpy.abs(a - b).max() / (numpy.abs(b).max() + 1e-12)) for a, b in pairs)


def primitive_fns(shape, x, w, g):
    """The three conv.py primitives as the op calls them (for the --primitives breakdown)."""
    _, kind, *_, s, p = shape
    st, pd = (s, s), (p, p)
    if kind == "conv":
        return {"forward": lambda: mconv_cpu.conv2d_forward(x, w, st, pd),
                "input_grad": lambda: mconv_cpu.conv2d_input_grad(g, w, x.shape, st, pd),
                "weight_grad": lambda: mconv_cpu.conv2d_weight_grad(x, g, w.shape, st, pd)}
    # deconv: forward is the input-grad primitive, its backward the forward and weight-grad ones
    return {"forward(col2im)": lambda: mconv_cpu.conv2d_input_grad(x, w, g.shape, st, pd),
            "input_grad(im2col)": lambda: mconv_cpu.conv2d_forward(g, w, st, pd),
            "weight_grad": lambda: mconv_cpu.conv2d_weight_grad(g, x, w.shape, st, pd)}


def paper_layer_shapes():
    """(count, shape) for each distinct convolution of the paper network, as rows like SHAPES."""
    from bench_kernels import distinct, paper_layers
    for name, count, x_shape, w_shape, stride, padding in distinct(paper_layers()):
        if name.endswith("T"):  # listed as the convolution it runs on: x_shape is its output
            size = (x_shape[1] + 2 * padding - w_shape[2]) // stride + 1
            yield count, (f"P {name}", "deconv", 5, w_shape[0], w_shape[1], size, w_shape[2], stride, padding)
        else:
            yield count, (f"P {name}", "conv", 5, x_shape[0], w_shape[0], x_shape[1], w_shape[2], stride, padding)


def time_paper_layers(torch, warmup, repeats):
    """Forward of every distinct paper layer, minimenet and (when given) torch, times its count;
    minimenet's by the direct form, and for the layers that ``winograd.suits`` by F(4 x 4, 3 x 3)
    too (``conv_cpu.conv2d_forward``'s choice for them, in training as at inference) with its
    largest error against the float64 direct form, relative to the largest output."""
    print(f"{'layer':30s} {'count':>5s} {'direct':>8s} {'winograd':>8s} {'its error':>9s}"
          + (f" {'pt fwd':>8s} {'x':>6s} {'count x (mm - pt)':>18s}" if torch else ""))
    total_direct = total_chosen = total_pt = 0.0
    for count, shape in paper_layer_shapes():
        x, w, g = make_arrays(shape)
        geometry = ConvGeometry.of(x.shape, w.shape, shape[-2], shape[-1], "bench") if shape[1] == "conv" else None
        if geometry is not None and winograd.suits(x, geometry):
            direct = time_call(lambda: mconv_cpu.conv2d_forward(x, w, geometry.stride, geometry.padding, direct=True), warmup, repeats)
            chosen = time_call(lambda: mconv_cpu.conv2d_forward(x, w, geometry.stride, geometry.padding), warmup, repeats)
            exact = mconv_cpu.conv2d_forward(x.astype(numpy.float64), w.astype(numpy.float64), geometry.stride, geometry.padding,
                                             direct=True)
            fast = mconv_cpu.conv2d_forward(x, w, geometry.stride, geometry.padding)
            line = f"{shape[0]:30s} {count:5d} {direct:8.2f} {chosen:8.2f} {numpy.abs(fast - exact).max() / numpy.abs(exact).max():9.1e}"
        else:
            direct = chosen = time_call(minimenet_fns(shape, x, w, g)[0], warmup, repeats)
            line = f"{shape[0]:30s} {count:5d} {direct:8.2f} {'':8s} {'':9s}"
        total_direct += count * direct
        total_chosen += count * chosen
        if torch:
            pt = time_call(torch_fns(torch, shape, x, w, g)[0], warmup, repeats)
            total_pt += count * pt
            line += f" {pt:8.2f} {chosen / pt:6.2f} {count * (chosen - pt):18.1f}"
        print(line, flush=True)
    print(f"{'all layers, ms a batch of 5':30s} {'':5s} {total_direct:8.1f} {total_chosen:8.1f} {'':9s}"
          + (f" {total_pt:8.1f} {total_chosen / total_pt:6.2f}" if torch else ""))
    if torch:
        print(f"direct form only: {total_direct:.1f} ms against PyTorch's {total_pt:.1f}, ratio {total_direct / total_pt:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-preset shapes")
    parser.add_argument("--only", choices=["conv", "deconv"], help="time only this kind of op")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch even if it imports")
    parser.add_argument("--threads", type=int, help="BLAS and torch threads (default: what NumPy's BLAS uses)")
    parser.add_argument("--primitives", action="store_true", help="also time conv.py's primitives one by one")
    parser.add_argument("--paper-layers", action="store_true",
                        help="instead: the forward of every distinct paper-network layer, times its count")
    args = parser.parse_args(argv)

    if args.threads:
        limit_blas(args.threads)
    threads, blas = blas_threads()
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None
    shapes = SHAPES + ([] if args.no_paper else PAPER_SHAPES)
    shapes = [s for s in shapes if args.only is None or s[1] == args.only]

    print(f"# bench_ops: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; numpy {numpy.__version__}, "
          f"BLAS {blas} with {threads} threads; "
          + (f"torch {torch.__version__} with {torch.get_num_threads()} threads" if torch else "torch not available")
          + f"; float32, median of {args.repeats} after {args.warmup} warm-up; load average {os.getloadavg()[0]:.1f} at start")
    if args.paper_layers:
        return time_paper_layers(torch, args.warmup, args.repeats)
    header = f"{'shape':30s} {'B':>2s} {'mm fwd':>8s} {'mm f+b':>8s}"
    if torch:
        header += f" {'pt fwd':>8s} {'pt f+b':>8s} {'fwd x':>6s} {'f+b x':>6s} {'maxrel':>8s}"
    print(header + "   (ms; x = minimenet / torch)")
    rows = []
    for shape in shapes:
        x, w, g = make_arrays(shape)
        fwd, fb = minimenet_fns(shape, x, w, g)
        row = {"shape": shape[0], "kind": shape[1], "batch": shape[2],
               "mm_fwd_ms": time_call(fwd, args.warmup, args.repeats),
               "mm_fb_ms": time_call(fb, args.warmup, args.repeats)}
        line = f"{shape[0]:30s} {shape[2]:2d} {row['mm_fwd_ms']:8.2f} {row['mm_fb_ms']:8.2f}"
        if torch:
            tf, tfb = torch_fns(torch, shape, x, w, g)
            row["pt_fwd_ms"] = time_call(tf, args.warmup, args.repeats)
            row["pt_fb_ms"] = time_call(tfb, args.warmup, args.repeats)
            row["maxrel"] = check_agreement(torch, shape, x, w, g)
            line += (f" {row['pt_fwd_ms']:8.2f} {row['pt_fb_ms']:8.2f} {row['mm_fwd_ms'] / row['pt_fwd_ms']:6.2f}"
                     f" {row['mm_fb_ms'] / row['pt_fb_ms']:6.2f} {row['maxrel']:8.1e}")
        print(line, flush=True)
        if args.primitives:
            parts = {name: time_call(fn, args.warmup, args.repeats) for name, fn in primitive_fns(shape, x, w, g).items()}
            print("      primitives: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()), flush=True)
        rows.append(row)
    if torch:
        total_mm = sum(r["mm_fb_ms"] for r in rows)
        total_pt = sum(r["pt_fb_ms"] for r in rows)
        print(f"{'sum of f+b over shapes':30s}    {'':8s} {total_mm:8.2f} {'':8s} {total_pt:8.2f} {'':6s} {total_mm / total_pt:6.2f}")
    return rows


if __name__ == "__main__":
    main()
