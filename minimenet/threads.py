"""The CPU's cores: minimenet's worker threads beside OpenBLAS's.

OpenBLAS splits each matrix product over its threads, which pays for large products but not for
the many small ones of a convolution cut into cache-sized blocks (``im2col.blocks``): on the
2-core development machine the forward of a 224 x 224 x 32 layer took 41 ms with one BLAS
thread and 53 ms with two, and the im2col copies between the products ran on one core either
way. Run instead as independent blocks on two threads of our own, each with a single-threaded
BLAS (NumPy releases the GIL in both the copies and the products), the same forward took 23 ms,
and 11 ms against 22 ms on a 28 x 28 x 256 layer (README, Benchmarks).

So ``parallel`` runs a list of independent tasks on ``workers()`` threads, with OpenBLAS set to
one thread for the while, and ``matmul`` splits a single product's rows over them the same way
(and, on OpenBLAS's SkylakeX kernels, cuts a product of few rows or few outputs into the pieces
that its small-matrix kernels take faster: ``SMALL_KERNELS``).
Every product of a convolution goes through one of the two, so OpenBLAS's own threads stay
idle: after a multi-threaded product they spin for a while, and on two cores that spinning took
a core from the next layer's workers (the 3x3 convolutions ran 1.6-1.9 times slower inside the
network than alone before every product went through here). ``workers()`` is the number of
threads OpenBLAS has (``OPENBLAS_NUM_THREADS``, else one per core, or what threadpoolctl set):
one keeps everything on the calling thread. Where OpenBLAS's thread count cannot be set
(another BLAS, or not Linux) there are no workers either, since two threads of ours each calling
a multi-threaded BLAS would fight over the cores.
"""
import concurrent.futures
import contextlib
import ctypes
import threading

import numpy

# Work below these sizes stays on the calling thread, where handing it out (tens of
# microseconds) would cost more than it saves: the tiny preset's step took 173 ms on two workers
# without this floor, 88 ms with it.
MIN_SPLIT_ELEMENTS = 2**18       # elementwise: elements of the output
MIN_SPLIT_MULTIPLY_ADDS = 2**25  # matrix products: multiply-adds

_inside_worker = threading.local()
_lock = threading.Lock()
_pools = {}  # worker count -> its thread pool


def _find_openblas():
    """(get_num_threads, set_num_threads, the name of the kernels it runs) of the OpenBLAS that
    NumPy loaded, or None."""
    try:  # NumPy, imported above, has loaded OpenBLAS: it is in the process's memory map
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        # NumPy's wheels prefix the names with scipy_ and their 64-bit-integer builds end them in 64_.
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                get = getattr(library, f"{prefix}openblas_get_num_threads{suffix}", None)
                set_ = getattr(library, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    core = getattr(library, f"{prefix}openblas_get_corename{suffix}", None)
                    if core is not None:
                        core.restype = ctypes.c_char_p
                    return get, set_, (core() or b"").decode("ascii", "replace") if core is not None else ""
    return None


_found = _find_openblas()
_openblas = _found[:2] if _found is not None else None

# OpenBLAS's SkylakeX kernels (also run under the names Cooperlake and SapphireRapids) multiply a
# float32 product of at most 100^3 multiply-adds by small-matrix kernels, which do not pack their
# operands. Where a product has few rows or few outputs, those took it 1.3-4.5 times faster than
# the packed kernels do the whole, one thread: (12, 12) @ (12, 33792) 170 -> 107 us in pieces,
# (4, 36) @ (36, 32768) 305 -> 97, (12, 33792) @ (33792, 12) 191 -> 84, (24, 8976) @ (8976, 48)
# 184 -> 141; but (48, 39) @ (39, 50176) 1585 -> 2008 and (96, 96) @ (96, 6780) level, and on
# the Haswell kernels, which have no such path, pieces were 3-6 % slower. The tiny preset's
# 64 x 64 convolutions are such products (its step 77.6-79.3 -> 72.7-73.8 ms on one thread).
# So is a stack of short products, where the packed kernels pack a again for every one: the
# stride-1 forward's stacked rows, (96, 96) @ (48, 96, 226), ran at 184 GFLOP/s as one product
# and 222 in three pieces of 76 columns; but (192, 96) @ (48, 96, 226) at 209 and 201 in five of
# 46, and (96, 96) @ (56, 96, 114) at 178 and 184 in two of 57 (pieces under MIN_STACKED_PIECE).
SMALL_KERNELS = _found is not None and _found[2].lower() in ("skylakex", "cooperlake", "sapphirerapids")
SMALL_PRODUCT = 100**3  # multiply-adds: the most OpenBLAS gives its small-matrix kernels
FEW_ROWS, FEW_OUTPUTS, MIN_PIECE = 16, 1152, 256
MIN_STACKED_PIECE = 64


def workers():
    """How many threads ``parallel`` runs tasks on: as many as OpenBLAS has now."""
    return _openblas[0]() if _openblas is not None else 1


def parallel(task, items):
    """[task(item) for item in items], the items spread over ``workers()`` threads when there
    are several items and several workers. Tasks must not depend on one another's results."""
    items = list(items)
    if getattr(_inside_worker, "active", False) or len(items) < 2 or workers() == 1:
        return [task(item) for item in items]
    with _openblas_at_one_thread() as count:
        if count not in _pools:
            _pools[count] = concurrent.futures.ThreadPoolExecutor(count, "minimenet-worker", _mark_worker)
        return list(_pools[count].map(task, items))


@contextlib.contextmanager
def _openblas_at_one_thread():
    """OpenBLAS at one thread for the while, its thread count (the workers') given to the block
    and restored after it. One such region at a time: the count is global to the process."""
    with _lock:
        count = workers()
        _openblas[1](1)
        try:
            yield count
        finally:
            _openblas[1](count)


def shared_out(xp, geometry):
    """Whether a convolution's blocks go to the worker threads: NumPy arrays, and enough work
    (``MIN_SPLIT_MULTIPLY_ADDS``)."""
    return xp is numpy and geometry.multiply_adds >= MIN_SPLIT_MULTIPLY_ADDS


def shares(xp, geometry):
    """How many workers share a convolution's blocks (``shared_out``)."""
    return workers() if shared_out(xp, geometry) else 1


def each_block(xp, task, blocks, geometry):
    """task(block) for every block of a convolution: on the worker threads where
    ``shared_out``, else in order on the calling thread, copies and all (``on_this_thread``)."""
    if shared_out(xp, geometry):
        return parallel(task, blocks)
    with on_this_thread():
        return [task(block) for block in blocks]


def matmul(a, b, out):
    """out = a @ b for a 2-D NumPy array a and b 2-D or a stack of matrices (..., K, N), shared
    out over the workers by the longer of a's rows and b's columns: each worker reads its part
    of one matrix and all of the other, so the split goes through the larger one (a
    convolution's (Co, K) @ (K, pixels) by pixels). One product where there is one worker or
    when called from a worker; a small product stays on the calling thread with OpenBLAS at one
    thread meanwhile, since a product on OpenBLAS's own threads leaves them spinning into the
    next region (paper step on two threads 3.67-3.81 s, 3.38-3.54 with OpenBLAS held at one
    thread throughout)."""
    if getattr(_inside_worker, "active", False) or workers() == 1:
        return _product(a, b, out)
    if a.shape[0] * b.size < MIN_SPLIT_MULTIPLY_ADDS:
        with _openblas_at_one_thread():
            return _product(a, b, out)
    by_rows = a.shape[0] >= b.shape[-1]
    if by_rows:
        parallel(lambda part: _product(a[part], b, out[..., part, :]), parts(a.shape[0], workers()))
    else:
        parallel(lambda part: _product(a, b[..., part], out[..., part]), parts(b.shape[-1], workers()))
    return out


def _product(a, b, out):
    """out = a @ b on the calling thread; on OpenBLAS's small-matrix kernels (``SMALL_KERNELS``),
    a float32 product of at most ``FEW_ROWS`` rows, or a stack of short products (in the fewest
    even pieces, where those are ``MIN_STACKED_PIECE`` columns or more), in pieces of b's
    columns, or one of at most ``FEW_OUTPUTS`` outputs in pieces of the inner dimension summed,
    each piece within ``SMALL_PRODUCT`` multiply-adds."""
    (rows, inner), columns = a.shape, b.shape[-1]
    if SMALL_KERNELS and out.dtype == numpy.float32 and rows * inner * columns > SMALL_PRODUCT:
        step = None
        if rows <= FEW_ROWS and rows * inner * MIN_PIECE <= SMALL_PRODUCT:
            step = SMALL_PRODUCT // (rows * inner)
        elif b.ndim > 2:
            even = -(-columns // -(-rows * inner * columns // SMALL_PRODUCT))  # columns of the fewest even pieces that fit
            step = even if even >= MIN_STACKED_PIECE else None
        if step is not None:
            for start in range(0, columns, step):
                numpy.matmul(a, b[..., start:start + step], out=out[..., start:start + step])
            return out
        if rows * columns <= FEW_OUTPUTS and rows * columns * MIN_PIECE <= SMALL_PRODUCT:
            step = SMALL_PRODUCT // (rows * columns)
            numpy.matmul(a[:, :step], b[..., :step, :], out=out)
            piece = numpy.empty_like(out)
            for start in range(step, inner, step):
                out += numpy.matmul(a[:, start:start + step], b[..., start:start + step, :], out=piece)
            return out
    return numpy.matmul(a, b, out=out)


def channel_slices(out, axis=1):
    """How ``apply``, the batch norm and the convolutions' copies share out an array's work:
    slices of its ``axis`` (the channels of an NCHW array by default; the batch rarely divides
    evenly over the workers), one per worker, or a single slice of everything where that is
    not worth it."""
    channels, count = out.shape[axis] if out.ndim > axis else 0, workers()
    if (getattr(_inside_worker, "active", False) or out.size < MIN_SPLIT_ELEMENTS or type(out) is not numpy.ndarray
            or channels < count or count == 1):
        return [slice(None)]
    return parts(channels, count)


def channel_groups(out, elements):
    """Slices of whole channels (axis 1) of a NumPy array for work of several passes per channel
    that should read what the last pass wrote from the cache: groups of at most about
    ``elements`` elements (at least one channel), and at least one per worker where
    ``channel_slices`` would share the array out (then they are its slices); ``parallel``
    hands them to the workers as they come free. One slice of everything for a CuPy array."""
    channels = out.shape[1]
    count = min(channels, max(-(-out.size // elements), len(channel_slices(out))))
    if type(out) is not numpy.ndarray or count <= 1:
        return [slice(None)]
    return parts(channels, count)


def parts(length, count):
    """range(length) in at most ``count`` slices of ceil(length / count), the last one shorter."""
    step = -(-length // count)
    return [slice(start, start + step) for start in range(0, length, step)]


def apply(ufunc, *args, out):
    """ufunc(*args, out=out), shared out over the workers by ``channel_slices``: each worker
    computes its channels of out from the same channels of every argument that has them (the
    others, e.g. a bias of shape (1, C, 1, 1) or a number, are broadcast whole)."""
    parts = channel_slices(out)
    if len(parts) == 1:
        return ufunc(*args, out=out)

    def part(channels):
        ufunc(*(a[:, channels] if getattr(a, "ndim", 0) == out.ndim and a.shape[1] == out.shape[1] else a
                for a in args), out=out[:, channels])
    parallel(part, parts)
    return out


@contextlib.contextmanager
def on_this_thread():
    """Everything in the block runs on the calling thread, as inside a worker, with OpenBLAS at
    one thread: for work too small to share out as a whole, whose parts are smaller still (the
    tiny preset's convolutions: its step on two threads took 90 ms with their copies shared
    out, 83 without)."""
    if getattr(_inside_worker, "active", False):
        yield
        return
    with _openblas_at_one_thread() if _openblas is not None else contextlib.nullcontext():
        _inside_worker.active = True
        try:
            yield
        finally:
            _inside_worker.active = False


def _mark_worker():
    _inside_worker.active = True
