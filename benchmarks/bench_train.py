"""Benchmark: ms per training step and per inference image, minimenet against PyTorch.

Training step = forward + loss (metric loss with hard mining and the authors' gradient + cross
entropy over all pixels) + backward + SGD update (momentum 0.9, weight decay 1e-8, lr 0.01,
biases at 2x lr without decay, as the authors' solver), on random raw 0-255 images and random
ellipse masks, float32. Inference = eval mode, no graph, forward + the CE map and both Eq. 5
metric maps (``model.saliency_maps``), reported per image. When PyTorch imports,
``benchmarks/torch_menet.py`` (an independent PyTorch MEnet of the same architecture) is timed in
the same run with as many threads as NumPy's BLAS uses; the library itself never imports torch.
Before timing, with torch, it checks that both models give the same loss from the same weights
(tiny preset; ``--no-check`` skips it); a disagreement is an AssertionError once the timings
are done.

    python benchmarks/bench_train.py                             # tiny + paper presets on the CPU
    python benchmarks/bench_train.py --presets tiny --steps 20
    python benchmarks/bench_train.py --device gpu --infer-batches 1,16 --out runs/bench_gpu
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_STEPS = {"tiny": 10, "paper": 3}
DEFAULT_BATCH = {"tiny": 8, "paper": 5}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,paper", help="comma-separated presets (tiny, paper)")
    p.add_argument("--steps", type=int, help=f"timed training steps per preset (default {DEFAULT_STEPS})")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--batch-tiny", type=int, default=DEFAULT_BATCH["tiny"])
    p.add_argument("--batch-paper", type=int, default=DEFAULT_BATCH["paper"])
    p.add_argument("--infer-repeats", type=int, default=3, help="timed inference batches (default 3)")
    p.add_argument("--infer-batches", help="comma-separated inference batch sizes, e.g. 1,16 (default: the training batch)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--conv-kernels", choices=["simple", "tiled", "tf32"],
                   help="on the GPU, which convolution kernels (default $MINIMENET_CONV_KERNELS or tiled)")
    p.add_argument("--threads", type=int, help="BLAS and torch threads (default: what NumPy's BLAS uses)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it imports")
    p.add_argument("--no-check", action="store_true",
                   help="skip the assertion that both models give the same loss from the same weights")
    p.add_argument("--out", help="directory for results.json and results.txt")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # The backend is chosen when minimenet is imported, so the device must be set first.
    os.environ["MINIMENET_DEVICE"] = ARGS.device
    if ARGS.conv_kernels:
        os.environ["MINIMENET_CONV_KERNELS"] = ARGS.conv_kernels
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import numpy  # noqa: E402

import minimenet  # noqa: E402
from minimenet import backend  # noqa: E402
from minimenet.cuda.conv import variant as conv_variant  # noqa: E402


from blas_threads import blas_threads, limit_blas  # noqa: E402


def random_batch(batch, size, seed=0):
    """Raw 0-255 images (what the network takes) and ellipse masks (1 inside a random ellipse,
    about 5-40% of the image)."""
    rng = numpy.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 3, size, size)).astype(numpy.float32)
    yy, xx = numpy.mgrid[0:size, 0:size] + 0.5
    masks = numpy.zeros((batch, size, size), dtype=numpy.int64)
    for b in range(batch):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        ay, ax = rng.uniform(0.15, 0.35, 2) * size
        theta = rng.uniform(0, numpy.pi)
        u = (xx - cx) * numpy.cos(theta) + (yy - cy) * numpy.sin(theta)
        v = -(xx - cx) * numpy.sin(theta) + (yy - cy) * numpy.cos(theta)
        masks[b] = (u / ax) ** 2 + (v / ay) ** 2 <= 1
    return images, masks


def sync_minimenet():
    if backend.device == "gpu":
        backend.xp.cuda.Device().synchronize()


def timed(fn, warmup, repeats, sync):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_inference(infer, image_sets, repeats, sync):
    """{batch size: median ms per image} of ``infer`` over each batch in ``image_sets``."""
    per_image = {}
    for b, images in image_sets.items():
        per_image[b] = statistics.median(timed(lambda: infer(images), 1, repeats, sync)) / b
    return per_image


def minimenet_runner(preset, images, masks, lr):
    from minimenet.config import network_config
    from minimenet.model import MEnet
    minimenet.manual_seed(0)
    model = MEnet(network_config(preset))
    opt = minimenet.SGD(model.parameters(), lr, momentum=0.9, weight_decay=1e-8,
                        multipliers=model.learning_rate_multipliers())
    x = minimenet.Tensor(backend.xp.asarray(images))
    m = backend.xp.asarray(masks)

    def step():
        model.train()
        out = model(x)
        loss, parts = model.loss(out, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return parts

    def infer(images):
        return model.saliency_maps(minimenet.Tensor(backend.xp.asarray(images)))
    return model, step, infer


def torch_runner(torch, preset, images, masks, lr, dev):
    import torch_menet
    torch.manual_seed(0)
    model = torch_menet.build(preset).to(dev)
    opt = torch_menet.sgd(model, lr, momentum=0.9, weight_decay=1e-8)
    x = torch.from_numpy(images).to(dev)
    m = torch.from_numpy(masks).to(dev)

    def step():
        model.train()
        loss, parts = model.loss(model(x), m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return parts

    def infer(images):
        with torch.no_grad():
            return model.saliency_maps(torch.from_numpy(images).to(dev))
    return model, step, infer


CHECK_RTOL = 1e-4          # loss gaps relative to the loss, float32 (TF32 is switched off in torch for the check)
CHECK_LOGITS_RTOL = 1e-3   # logits (after 72 layers in float32: about 2e-5 seen on the CPU)


def check_same_loss(torch, preset, images, masks, dev):
    """Copy minimenet's initial weights (parameters in order, BN running statistics) into the
    torch twin and assert that the two give the same logits and losses on one batch, float32: a
    check that the architectures, not just the parameter counts, agree (tests/test_torch_twin.py
    does this level by level in float64)."""
    import torch_menet
    from minimenet.config import network_config
    from minimenet.model import MEnet
    minimenet.manual_seed(0)
    mm = MEnet(network_config(preset))
    tm = torch_menet.copy_from_minimenet(torch_menet.build(preset).to(dev), mm)
    out = mm(minimenet.Tensor(backend.xp.asarray(images)))
    loss, parts = mm.loss(out, backend.xp.asarray(masks))
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        t_out = tm(torch.from_numpy(images).to(dev))
        t_loss, t_parts = tm.loss(t_out, torch.from_numpy(masks).to(dev))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    ref = t_out.logits.detach().cpu().numpy()
    diff = float(numpy.abs(out.logits.numpy() - ref).max() / numpy.abs(ref).max())
    t_loss = t_loss.item()
    scale = abs(t_loss)
    gaps = {"total": abs(loss.item() - t_loss) / scale,
            **{k: abs(parts[k] - float(t_parts[k])) / scale for k in parts}}
    note = (f"same weights: logits max rel diff {diff:.1e}; loss {loss.item():.6f} vs {t_loss:.6f} "
            f"(metric {parts['metric']:.6f} vs {float(t_parts['metric']):.6f}, ce {parts['ce']:.6f} vs {float(t_parts['ce']):.6f}); "
            f"largest gap / loss {max(gaps.values()):.1e}")
    if diff < CHECK_LOGITS_RTOL and max(gaps.values()) < CHECK_RTOL:
        return True, note
    return False, "DISAGREE (the timings below still run): " + note


def fmt(v, spec="10.1f"):
    return format(v, spec) if isinstance(v, (int, float)) else f"{'-':>{spec.split('.')[0]}s}"


def main(args):
    if args.threads:
        limit_blas(args.threads)
    threads, blas = blas_threads()
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    dev = "cpu"
    if torch is not None:
        torch.set_num_threads(threads)
        if args.device == "gpu":
            if not torch.cuda.is_available():
                print("# torch has no CUDA here: timing minimenet only")
                torch = None
            else:
                dev = "cuda"
    tsync = (lambda: torch.cuda.synchronize()) if torch is not None and dev == "cuda" else (lambda: None)

    header = (f"# bench_train: minimenet {minimenet.__version__} on {backend.device}"
              + (f" ({backend.xp.cuda.runtime.getDeviceProperties(0)['name'].decode()}, "
                 f"{conv_variant().name} convolution kernels)" if backend.device == "gpu" else "")
              + f"; {platform.machine()} {os.cpu_count()} CPUs; numpy {numpy.__version__}, BLAS {blas} with {threads} threads; "
              + (f"torch {torch.__version__} on {dev} with {torch.get_num_threads()} threads" if torch else "torch not timed")
              + f"; float32, SGD lr {args.lr} momentum 0.9; load average {os.getloadavg()[0]:.1f} at start")
    print(header, flush=True)
    results, notes, disagreements = [], [], 0
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        batch = {"tiny": args.batch_tiny, "paper": args.batch_paper}[preset]
        steps = args.steps or DEFAULT_STEPS[preset]
        size = {"tiny": 64, "paper": 224}[preset]
        images, masks = random_batch(batch, size)
        infer_batches = [int(b) for b in args.infer_batches.split(",")] if args.infer_batches else [batch]
        infer_sets = {b: random_batch(b, size, seed=1)[0] for b in infer_batches}
        row = {"preset": preset, "batch": batch, "steps": steps, "warmup": args.warmup, "device": backend.device}

        if torch is not None and not args.no_check and preset == "tiny":
            same, note = check_same_loss(torch, preset, images, masks, dev)
            note = f"{preset}: {note}"
            disagreements += not same
            print("# " + note, flush=True)
            notes.append(note)

        mm_model, step, infer = minimenet_runner(preset, images, masks, args.lr)
        row["mm_params"] = mm_model.num_parameters()
        t = timed(step, args.warmup, steps, sync_minimenet)
        row["mm_step_ms"], row["mm_step_all_ms"] = statistics.median(t), t
        row["mm_infer_ms_per_image"] = time_inference(infer, infer_sets, args.infer_repeats, sync_minimenet)
        del mm_model, step, infer

        if torch is not None:
            t_model, t_step, t_infer = torch_runner(torch, preset, images, masks, args.lr, dev)
            row["pt_params"] = sum(p.numel() for p in t_model.parameters())
            t = timed(t_step, args.warmup, steps, tsync)
            row["pt_step_ms"], row["pt_step_all_ms"] = statistics.median(t), t
            row["pt_infer_ms_per_image"] = time_inference(t_infer, infer_sets, args.infer_repeats, tsync)
            row["step_ratio"] = row["mm_step_ms"] / row["pt_step_ms"]
            row["infer_ratio"] = {b: row["mm_infer_ms_per_image"][b] / row["pt_infer_ms_per_image"][b]
                                  for b in infer_sets}
            del t_model, t_step, t_infer
        results.append(row)
        print(f"# {preset}: done ({steps} timed steps after {args.warmup} warm-up)", flush=True)

    lines = [header,
             f"{'preset':7s} {'batch':>5s} {'params':>11s} | {'step mm ms':>10s} {'step pt ms':>10s} {'ratio':>6s}"
             f" || {'infer batch':>11s} | {'mm ms/img':>9s} {'pt ms/img':>9s} {'ratio':>6s}"]
    for r in results:
        train = (f"{r['preset']:7s} {r['batch']:5d} {r['mm_params']:11,d} | {fmt(r['mm_step_ms'])} {fmt(r.get('pt_step_ms'))} "
                 f"{fmt(r.get('step_ratio'), '6.2f')}")
        for i, b in enumerate(r["mm_infer_ms_per_image"]):
            lines.append((train if i == 0 else " " * len(train))
                         + f" || {b:11d} | {fmt(r['mm_infer_ms_per_image'][b], '9.2f')} "
                           f"{fmt(r.get('pt_infer_ms_per_image', {}).get(b), '9.2f')} {fmt(r.get('infer_ratio', {}).get(b), '6.2f')}")
        if "pt_params" in r and r["pt_params"] != r["mm_params"]:
            lines.append(f"  WARNING: parameter counts differ: minimenet {r['mm_params']:,} torch {r['pt_params']:,}")
    notes.append(f"load average {os.getloadavg()[0]:.1f} at the end")
    lines += ["# " + n for n in notes]
    print("\n".join(lines[1:]))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as fh:
            json.dump({"header": header, "notes": notes, "results": results,
                       "argv": sys.argv[1:], "time": time.strftime("%Y-%m-%d %H:%M:%S")}, fh, indent=2)
        with open(os.path.join(args.out, "results.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return results, disagreements


if __name__ == "__main__":
    # A disagreement fails the run after the timings, so that one GPU run brings back both.
    if main(ARGS)[1]:
        raise AssertionError("minimenet and benchmarks/torch_menet.py disagree on the same weights (see the note above)")
