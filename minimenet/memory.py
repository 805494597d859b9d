"""Reused memory for the large arrays of a CPU training step.

On Linux, glibc gives every allocation over 32 MB (at most; less before it adapts) its own fresh
mapping and unmaps it when the array is freed, so each large array of a step is faulted in and
zeroed by the kernel again, page by page, every step: the paper preset's 5 x 32 x 224 x 224
activations (32.1 MB each), their gradients, the 7 x 7 layers' 205 MB weight gradients and the
SGD update's temporaries. That was 0.9-1.4 s of system time in a 7.7 s paper step on the 2-core
development machine (README, Benchmarks), though the arrays have the same sizes every step.

``empty`` hands out such arrays (``MIN_BYTES`` or more) as views of buffers it keeps, one list
per byte size. A NumPy view holds a reference to the buffer under it (its ``base``), and so do
the views of that view, so a buffer that nothing but this pool references is free to hand out
again: one ``sys.getrefcount`` tells. Memory that a step used is kept for the next step instead
of going back to the system; ``release`` gives back what is free now. CuPy keeps a memory pool of
its own, so for CuPy arrays (and small NumPy arrays) ``empty`` is the array module's ``empty``.

Below ``MIN_BYTES`` glibc serves arrays from its heap, but it gives the top of the heap back to
the system once more than its trim threshold is free there (128 KB at first, up to 64 MB as it
adapts), so the next step's arrays fault their pages in again too, wherever the step's frees
happen to leave the top. ``keep_freed_memory``
(called on import) asks glibc to keep what is freed and to map afresh only from ``MIN_BYTES``:
paper step on one thread 5.25 / 5.26 s without, 5.04 / 5.10 s with (alternating processes;
a graph walk that adds gradients went from 217 to 35 ms a step), the peak unchanged (3,328 MiB).
The process's memory then stays at its peak until it exits.

Temporaries that never leave the function that makes them (im2col columns, a product before it
is copied into place) come from ``scratch`` instead: one buffer per name and thread, grown to
the largest use, shared by every layer. Held by ``empty``'s pool, they would each keep a buffer
of their own size, and the pool would outgrow the step's true peak.
"""
import collections
import ctypes
import math
import sys
import threading

import numpy

from .backend import array_module

# glibc maps anything over 32 MB afresh (less only before it adapts): smaller arrays come from
# memory it keeps, and pooling them too (from 4 MB) raised a paper step's peak memory from 5.6 to
# 5.8 GB for no measurable speed.
MIN_BYTES = 2**25

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """Ask the C library to keep freed heap memory for reuse instead of giving it back to the
    system (glibc's mallopt: trim only past 2 GB free, map afresh only from ``MIN_BYTES``).
    Returns whether it did; elsewhere (no mallopt, or one that refuses) nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no "this process" library
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MIN_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1


KEEPS_FREED_MEMORY = keep_freed_memory()
_buffers = collections.defaultdict(list)  # byte size -> buffers (uint8 arrays) of that size
_lock = threading.Lock()


def _references(buffers, i):
    return sys.getrefcount(buffers[i])


# What _references counts for a buffer that only the pool holds (the list, the call's own
# temporaries), measured rather than assumed: CPython versions count borrowed references differently.
_FREE = _references([numpy.empty(1, dtype=numpy.uint8)], 0)


def empty(shape, dtype, like):
    """An uninitialised array of ``shape`` and ``dtype`` on ``like``'s backend."""
    xp = array_module(like)
    dtype = numpy.dtype(dtype)
    shape = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    size = math.prod(shape) * dtype.itemsize
    if xp is not numpy or size < MIN_BYTES:
        return xp.empty(shape, dtype=dtype)
    with _lock:
        buffers = _buffers[size]
        for i in range(len(buffers)):
            if _references(buffers, i) == _FREE:
                buffer = buffers[i]
                break
        else:
            buffer = numpy.empty(size, dtype=numpy.uint8)
            buffers.append(buffer)
    return buffer.view(dtype).reshape(shape)


def empty_like(a):
    """``empty(a.shape, a.dtype, like=a)``."""
    return empty(a.shape, a.dtype, a)


_scratch = threading.local()


def scratch(name, shape, dtype, like):
    """A scratch array of ``shape`` for one use at a time under ``name`` on this thread, its
    contents undefined: for NumPy a view of a per-thread buffer that only ever grows, so that the
    same memory serves every layer (for temporaries that never leave the function that made
    them); for CuPy, whose memory pool already recycles, a new array."""
    xp = array_module(like)
    if xp is not numpy:
        return xp.empty(shape, dtype=dtype)
    size = math.prod(shape) * numpy.dtype(dtype).itemsize
    buffers = _scratch.__dict__.setdefault("buffers", {})
    if name not in buffers or buffers[name].size < size:
        buffers[name] = numpy.empty(size, dtype=numpy.uint8)
    return buffers[name][:size].view(dtype).reshape(shape)


def release():
    """Give the buffers that no array uses back to the system; returns how many bytes that was."""
    freed = 0
    with _lock:
        for size, buffers in list(_buffers.items()):
            kept = [buffers[i] for i in range(len(buffers)) if _references(buffers, i) != _FREE]
            freed += size * (len(buffers) - len(kept))
            if kept:
                _buffers[size] = kept
            else:
                del _buffers[size]
    return freed


def held_bytes():
    """Bytes in the pool's buffers, in use or not."""
    with _lock:
        return sum(size * len(buffers) for size, buffers in _buffers.items())
