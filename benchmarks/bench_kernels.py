"""Benchmark (not a test): achieved TFLOP/s of the hand-written convolution kernels on a GPU.

    python3 benchmarks/bench_kernels.py RESULTS_DIR [--batch 5] [--require-gpu]

For every distinct convolution of the authors' MEnet at the paper preset (224x224x3 raw input,
widths c_i = 32 2^i up to 1024; 3x3/1, 3x3/2, 1x1/2, the 7x7 squeeze and expand, the 4x4/2 and
2x2/2 transposed convolutions, the 13 scale maps, the 13->16 and 13->2 heads) at batch 5, it times the three kernels (forward, input grad, weight
grad) in each variant (simple: kernels/conv2d.cu; tiled and tf32: kernels/conv2d_tiled.cu)
through minimenet.cuda with CUDA events after a warm-up, first checking each variant's result
against a float64 reference on that very layer (a few outputs), and, when
PyTorch with CUDA imports, the same three computations in PyTorch (cuDNN with its defaults,
which allow TF32 tensor cores on Ampere and later). A transposed convolution is timed as the
convolution it runs on (its forward is that convolution's input grad; see minimenet/cuda/conv.py).

FLOPs are the useful ones, 2 B Co Ho Wo Ci kh kw per kernel, the same for all three. Times
include the Python launch overhead, as training sees it; that overhead dominates only for the
tiny 1x1 layers.

Writes RESULTS_DIR/bench_kernels.json and .csv and prints a table. Without a usable GPU it says
so and runs one tiny convolution in the CPU emulator instead, to show the kernels work; exit
status 0 unless --require-gpu is given. Works with cupy-cuda12x and cupy-cuda13x alike.
"""
import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy  # noqa: E402

from minimenet import cuda  # noqa: E402
from minimenet.cuda import conv as cuda_conv  # noqa: E402
from minimenet.backend import _probe_cupy  # noqa: E402

KERNELS = ("forward", "input_grad", "weight_grad")
KERNEL_VARIANTS = cuda_conv.KERNEL_VARIANTS
MIN_TIMED_SECONDS = 0.05  # each measurement repeats a call until about this much GPU time


def paper_layers(image_size=224, width=32):
    """Every convolution of the authors' MEnet (72 layers; see shared/reference/authors-menet.md),
    as (name, x_shape without batch, w_shape, stride, padding), widths c_i = width 2^i.

    A transposed convolution appears as the convolution it runs on: w (Cin, Cout, k, k) read as a
    conv weight (co = Cin, ci = Cout) whose input is the deconvolution's output (so the 7 x 7
    expand is the same convolution as the 7 x 7 squeeze, and ``distinct`` counts it twice)."""
    c = [width * 2 ** i for i in range(6)]
    S, k = image_size, image_size // 32
    layers = [("stem 3x3", (3, S, S), (c[0], 3, 3, 3), 1, 1)]
    layers += [("e0 3x3", (c[0], S, S), (c[0], c[0], 3, 3), 1, 1)] * 4          # two residual units
    for i in range(1, 6):                                                          # down levels
        n = S // 2 ** (i - 1)
        layers.append((f"down{i} 3x3/2", (c[i - 1], n, n), (c[i], c[i - 1], 3, 3), 2, 1))
        layers.append((f"down{i} 1x1/2", (c[i - 1], n, n), (c[i], c[i - 1], 1, 1), 2, 0))
        layers += [(f"e{i} 3x3", (c[i], n // 2, n // 2), (c[i], c[i], 3, 3), 1, 1)] * 3
    layers.append((f"squeeze {k}x{k} valid", (c[5], k, k), (c[5], c[5], k, k), 1, 0))
    layers.append((f"expand {k}x{k} T", (c[5], k, k), (c[5], c[5], k, k), 1, 0))
    for j in (4, 3, 2, 1, 0):                                                      # up levels
        n = S // 2 ** j                                                            # output size
        layers.append((f"up{j} 4x4/2 T", (c[j], n, n), (2 * c[j + 1], c[j], 4, 4), 2, 1))
        layers.append((f"up{j} 2x2/2 T", (c[j], n, n), (2 * c[j + 1], c[j], 2, 2), 2, 0))
        layers += [(f"g{j} 3x3", (c[j], n, n), (c[j], c[j], 3, 3), 1, 1)] * 3
    for name, ch, n in ([("image", 3, S)] + [(f"e{i}", c[i], S // 2 ** i) for i in range(6)]
                        + [(f"g{j}", c[j], S // 2 ** j) for j in range(5)] + [("d5", c[5], k)]):
        layers.append((f"map {name} 3x3->1", (ch, n, n), (1, ch, 3, 3), 1, 1))
    layers.append(("feature 13->16", (13, S, S), (16, 13, 3, 3), 1, 1))
    layers.append(("CE head 13->2", (13, S, S), (2, 13, 3, 3), 1, 1))
    assert len(layers) == 72
    return layers


def distinct(layers):
    """Identical convolutions once each, with how many times the network has them."""
    seen = {}
    for name, x_shape, w_shape, stride, padding in layers:
        key = (x_shape, w_shape, stride, padding)
        if key in seen:
            seen[key][1] += 1
        else:
            seen[key] = [name, 1]
    return [(name, count, *key) for key, (name, count) in seen.items()]


def output_hw(x_shape, w_shape, stride, padding):
    return tuple((x_shape[1 + d] + 2 * padding - w_shape[2 + d]) // stride + 1 for d in range(2))


def time_gpu(function, synchronize, event_type, elapsed_ms):
    """Milliseconds per call: warm up (compiles the kernels on the first call), estimate, then
    time enough calls for about MIN_TIMED_SECONDS between two CUDA events."""
    for _ in range(2):
        function()
    synchronize()
    start, end = event_type(), event_type()
    start.record()
    function()
    end.record()
    end.synchronize()
    repeats = max(3, min(200, math.ceil(MIN_TIMED_SECONDS * 1e3 / max(elapsed_ms(start, end), 1e-3))))
    start.record()
    for _ in range(repeats):
        function()
    end.record()
    end.synchronize()
    return elapsed_ms(start, end) / repeats


def layer_arrays(cupy, batch, x_shape, w_shape, stride, padding):
    x = cupy.random.standard_normal((batch, *x_shape), dtype=cupy.float32)
    w = cupy.random.standard_normal(w_shape, dtype=cupy.float32)
    dy = cupy.random.standard_normal((batch, w_shape[0], *output_hw(x_shape, w_shape, stride, padding)), dtype=cupy.float32)
    return x, w, dy


def minimenet_calls(arrays, stride, padding, kernels):
    x, w, dy = arrays
    pair_stride, pair_padding = (stride, stride), (padding, padding)
    return {
        "forward": lambda: cuda.conv2d_forward(x, w, pair_stride, pair_padding, kernels=kernels),
        "input_grad": lambda: cuda.conv2d_input_grad(dy, w, x.shape, pair_stride, pair_padding, kernels=kernels),
        "weight_grad": lambda: cuda.conv2d_weight_grad(x, dy, w.shape, pair_stride, pair_padding, kernels=kernels),
    }


def host_reference_arrays(arrays, padding):
    """x, w, dy on the host in float64, and x zero-padded, for ``spot_check_error``."""
    x, w, dy = (a.get().astype(numpy.float64) for a in arrays)
    return x, w, dy, numpy.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def spot_check_error(result, host_arrays, kernel, stride, padding, samples=64):
    """Largest error, relative to the reference's scale, of ``samples`` random elements of a GPU
    result against float64 sums on the host: a check that what is timed is right."""
    x, w, dy, padded = host_arrays
    result = result.get()
    rng = numpy.random.default_rng(0)
    kh, kw = w.shape[2:]
    out_h, out_w = dy.shape[2:]
    errors, scales = [], []
    for index in zip(*(rng.integers(0, size, samples) for size in result.shape)):
        if kernel == "forward":
            n, co, oh, ow = index
            terms = w[co] * padded[n, :, oh * stride:oh * stride + kh, ow * stride:ow * stride + kw]
        elif kernel == "weight_grad":
            co, ci, r, s = index
            window = padded[:, ci, r:r + stride * (out_h - 1) + 1:stride, s:s + stride * (out_w - 1) + 1:stride]
            terms = dy[:, co] * window
        else:  # input_grad: tap (r, s) joined x pixel (ih, iw) to output pixel ((ih + p - r) / s, ...)
            n, ci, ih, iw = index
            terms = [numpy.zeros(1)]
            for r in range(kh):
                for s in range(kw):
                    th, tw = ih + padding - r, iw + padding - s
                    if th >= 0 and tw >= 0 and th % stride == 0 and tw % stride == 0 \
                            and th // stride < out_h and tw // stride < out_w:
                        terms.append(dy[n, :, th // stride, tw // stride] * w[:, ci, r, s])
            terms = numpy.concatenate(terms)
        errors.append(abs(result[index] - terms.sum()))
        scales.append(numpy.abs(terms).sum())
    return max(errors) / max(max(scales), 1e-30)


def torch_calls(torch, batch, x_shape, w_shape, stride, padding):
    x = torch.randn((batch, *x_shape), device="cuda")
    w = torch.randn(w_shape, device="cuda")
    dy = torch.randn((batch, w_shape[0], *output_hw(x_shape, w_shape, stride, padding)), device="cuda")
    conv2d, grad = torch.nn.functional.conv2d, torch.nn.grad
    return {
        "forward": lambda: conv2d(x, w, stride=stride, padding=padding),
        "input_grad": lambda: grad.conv2d_input(x.shape, w, dy, stride=stride, padding=padding),
        "weight_grad": lambda: grad.conv2d_weight(x, w.shape, dy, stride=stride, padding=padding),
    }


def import_torch_cuda():
    """PyTorch when it imports and sees the GPU, else (None, why not)."""
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install raising anything
        return None, f"PyTorch not importable ({type(exc).__name__})"
    if not torch.cuda.is_available():
        return None, "PyTorch imports but sees no CUDA device"
    return torch, None


def cpu_demonstration():
    """One tiny convolution in the CPU emulator, checked against a direct sum."""
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9)).astype(numpy.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(numpy.float32)
    started = time.perf_counter()
    y = cuda.conv2d_forward(x, w, (2, 2), (1, 1))
    seconds = time.perf_counter() - started
    padded = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = sum(numpy.einsum("bihw,oi->bohw", padded[:, :, r:r + 9:2, s:s + 9:2], w[:, :, r, s])
                   for r in range(3) for s in range(3))
    error = float(numpy.abs(y - expected).max())
    print(f"emulator: conv2d_forward x {x.shape} w {w.shape} stride 2 pad 1 -> y {y.shape} "
          f"in {seconds * 1e3:.0f} ms (including the first build), max |error| {error:.1e}")


# Dense (no sparsity) peaks from NVIDIA's datasheets, TFLOP/s: (FP32 on the CUDA cores, TF32 on
# the tensor cores). The SXM parts; an H200 has the H100's arithmetic.
DATASHEET_PEAKS = {"H100": (67.0, 494.7), "H200": (67.0, 494.7), "A100": (19.5, 156.0)}


def datasheet_peaks(device_name):
    return next((peaks for key, peaks in DATASHEET_PEAKS.items() if key in device_name), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", nargs="?", default="runs/bench_kernels", help="where the JSON and CSV go")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--require-gpu", action="store_true", help="exit 1 instead of 0 when no GPU is usable")
    arguments = parser.parse_args()

    cupy, reason = _probe_cupy()
    if cupy is None:
        print(f"bench_kernels: no usable GPU ({reason}).\nThis benchmark times the CUDA kernels on a "
              "GPU; on this machine it only shows the same kernels running in the CPU emulator.")
        cpu_demonstration()
        return 1 if arguments.require_gpu else 0

    torch, torch_reason = import_torch_cuda()
    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    device_name = properties["name"].decode() if isinstance(properties["name"], bytes) else properties["name"]
    print(f"device: {device_name}; CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}; "
          f"batch {arguments.batch}")
    if torch is None:
        print(f"no PyTorch comparison: {torch_reason}")
    else:
        print(f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, defaults "
              f"(cudnn.benchmark={torch.backends.cudnn.benchmark}, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32})")

    rows = []
    header = (f"{'layer':<22}{'n':>3} {'x (C,H,W)':<16}{'w':<20}{'s':>2}{'p':>2} {'kernel':<12}{'GFLOP':>8}"
              + "".join(f"{v + ' ms':>10}{'TF/s':>7}{'err':>8}" for v in KERNEL_VARIANTS))
    header += f"{'cuDNN ms':>10}{'TF/s':>7}{'best/cuDNN':>11}" if torch else ""
    print("err: spot-check error of the variant's result; best/cuDNN: the fastest variant's time over "
          "cuDNN's (below 1 is faster than cuDNN)" if torch else "err: spot-check error of the variant's result")
    print(header)
    synchronize = cupy.cuda.Device().synchronize
    for name, count, x_shape, w_shape, stride, padding in distinct(paper_layers()):
        ho, wo = output_hw(x_shape, w_shape, stride, padding)
        flop = 2 * arguments.batch * w_shape[0] * ho * wo * w_shape[1] * w_shape[2] * w_shape[3]
        arrays = layer_arrays(cupy, arguments.batch, x_shape, w_shape, stride, padding)
        host_arrays = host_reference_arrays(arrays, padding)
        ours = {v: minimenet_calls(arrays, stride, padding, v) for v in KERNEL_VARIANTS}
        theirs = torch_calls(torch, arguments.batch, x_shape, w_shape, stride, padding) if torch else None
        for kernel in KERNELS:
            row = dict(layer=name, count=count, x_shape=list(x_shape), w_shape=list(w_shape), stride=stride,
                       padding=padding, kernel=kernel, gflop=flop / 1e9)
            line = (f"{name:<22}{count:>3} {str(x_shape):<16}{str(w_shape):<20}{stride:>2}{padding:>2} "
                    f"{kernel:<12}{flop / 1e9:>8.3f}")
            for v in KERNEL_VARIANTS:
                error = spot_check_error(ours[v][kernel](), host_arrays, kernel, stride, padding)
                ms = time_gpu(ours[v][kernel], synchronize, cupy.cuda.Event, cupy.cuda.get_elapsed_time)
                row.update({f"{v}_ms": ms, f"{v}_tflops": flop / ms / 1e9, f"{v}_error": error})
                line += f"{ms:>10.3f}{flop / ms / 1e9:>7.2f}{error:>8.0e}"
            if theirs:
                torch_ms = time_gpu(theirs[kernel], torch.cuda.synchronize,
                                    lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b))
                best = min(row[f"{v}_ms"] for v in KERNEL_VARIANTS)
                row.update(cudnn_ms=torch_ms, cudnn_tflops=flop / torch_ms / 1e9, best_vs_cudnn=best / torch_ms)
                line += f"{torch_ms:>10.3f}{row['cudnn_tflops']:>7.2f}{row['best_vs_cudnn']:>10.2f}x"
            rows.append(row)
            print(line, flush=True)

    print("\nwhole network, each distinct layer times its count (ms, and TFLOP/s):")
    for kernel in KERNELS:
        selected = [r for r in rows if r["kernel"] == kernel]
        total_flop = sum(r["gflop"] * r["count"] for r in selected) * 1e9
        summary = f"  {kernel:<12}"
        for v in (*KERNEL_VARIANTS, "cudnn") if torch else KERNEL_VARIANTS:
            total_ms = sum(r[f"{v}_ms"] * r["count"] for r in selected)
            summary += f"  {v} {total_ms:8.2f} ms {total_flop / total_ms / 1e9:6.2f}"
        print(summary)
    peaks = datasheet_peaks(device_name)
    if peaks:
        fp32, tf32 = peaks
        print(f"as a fraction of the {device_name} datasheet's dense peaks (FP32 {fp32} TFLOP/s, TF32 {tf32} TFLOP/s), "
              "whole network, all three kernels:")
        total_flop = sum(r["gflop"] * r["count"] for r in rows) * 1e9
        for v in (*KERNEL_VARIANTS, "cudnn") if torch else KERNEL_VARIANTS:
            tflops = total_flop / sum(r[f"{v}_ms"] * r["count"] for r in rows) / 1e9
            print(f"  {v:<8} {tflops:7.2f} TFLOP/s = {tflops / fp32:6.1%} of FP32, {tflops / tf32:6.1%} of TF32")
    worst = max(r[f"{v}_error"] for r in rows for v in KERNEL_VARIANTS)
    print(f"largest spot-check error (relative to the sum of |terms|): {worst:.1e}"
          + ("  <- TOO LARGE: a kernel is wrong" if worst > 1e-2 else ""))

    results = Path(arguments.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    meta = dict(device=device_name, cupy=cupy.__version__, batch=arguments.batch,
                torch=torch.__version__ if torch else None, torch_note=torch_reason)
    (results / "bench_kernels.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    with open(results / "bench_kernels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[-1]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()})
    print(f"wrote {results / 'bench_kernels.json'} and {results / 'bench_kernels.csv'}")
    return 1 if worst > 1e-2 else 0


if __name__ == "__main__":
    sys.exit(main())
