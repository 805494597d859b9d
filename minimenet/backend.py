"""The array backend: one code path over NumPy (CPU) and CuPy (GPU).

``xp`` is the module new arrays are made with: CuPy when it imports and a GPU is usable, NumPy
otherwise. ``MINIMENET_DEVICE=cpu`` or ``gpu`` forces one; forcing ``gpu`` without a usable GPU
raises ``BackendError`` naming the cause. Importing minimenet never fails because CuPy or a CUDA
driver is missing.

Ops never assume ``xp``: they ask ``array_module(a)`` for the module of the arrays they receive,
so NumPy and CuPy arrays can both flow through the same code (tests use this to run one suite on
both backends).
"""
import os

import numpy


class BackendError(RuntimeError):
    pass


def _probe_cupy():
    """Return (cupy module, None) when a GPU is usable, else (None, reason)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        return None, f"CuPy could not be imported ({type(exc).__name__}: {exc}); install it with pip install 'minimenet[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy imported but no CUDA device could be queried ({type(exc).__name__}: {exc})"
    if count == 0:
        return None, "CuPy imported but it sees no CUDA device"
    return cupy, None


def _select():
    wanted = os.environ.get("MINIMENET_DEVICE", "").strip().lower()
    if wanted not in ("", "cpu", "gpu"):
        raise BackendError(f"MINIMENET_DEVICE={wanted!r} is not understood: use 'cpu' or 'gpu' (or leave it unset to pick automatically)")
    if wanted == "cpu":
        return numpy, "cpu"
    cupy, reason = _probe_cupy()
    if cupy is not None:
        return cupy, "gpu"
    if wanted == "gpu":
        raise BackendError(f"MINIMENET_DEVICE=gpu but no GPU is usable: {reason}. Unset MINIMENET_DEVICE or set it to 'cpu' to run on NumPy.")
    return numpy, "cpu"


xp, device = _select()


def array_module(a):
    """NumPy or CuPy, whichever ``a`` belongs to."""
    if type(a) is numpy.ndarray:  # asked thousands of times a training step: the common case first
        return numpy
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    return numpy


def is_gpu_array(a):
    return array_module(a) is not numpy


def runs_on_cuda_kernels(a):
    """Whether an op on ``a`` runs our CUDA kernels (``kernels/*.cu``): float32 arrays on the GPU.
    The one place that decides; convolutions and the metric loss ask it, and everything else
    (other dtypes, NumPy arrays) runs the array code on ``array_module(a)``."""
    return is_gpu_array(a) and a.dtype == "float32"


def to_numpy(a):
    """A NumPy copy (or view) of any backend's array."""
    return a.get() if is_gpu_array(a) else numpy.asarray(a)
