"""minimenet.memory: large arrays come from reused buffers, never one that an array still uses."""
import gc

import numpy as np
import pytest

import minimenet as mm
from minimenet import memory

LARGE = (memory.MIN_BYTES // 4,)  # float32 elements filling exactly MIN_BYTES


def address(a):
    return a.__array_interface__["data"][0]


def test_a_freed_buffer_is_handed_out_again():
    a = memory.empty(LARGE, np.float32, like=np.empty(0))
    where = address(a)
    del a
    b = memory.empty(LARGE, np.float32, like=np.empty(0))
    assert address(b) == where


@pytest.mark.parametrize("keep", ["array", "slice", "reshaped view", "view of a view"])
def test_a_buffer_in_use_is_never_handed_out(keep):
    a = memory.empty(LARGE, np.float32, like=np.empty(0))
    a[...] = 1
    kept = {"array": lambda array: array, "slice": lambda array: array[10:],
            "reshaped view": lambda array: array.reshape(-1, 4),
            "view of a view": lambda array: array.reshape(-1, 4)[::2].T}[keep](a)
    del a
    gc.collect()
    b = memory.empty(LARGE, np.float32, like=np.empty(0))
    b[...] = 2
    assert not np.shares_memory(kept, b)
    assert (kept == 1).all()


def test_sizes_and_dtypes_share_buffers_by_bytes():
    a = memory.empty((2, memory.MIN_BYTES // 8), np.float32, like=np.empty(0))
    where = address(a)
    del a
    b = memory.empty((memory.MIN_BYTES // 8,), np.float64, like=np.empty(0))
    assert address(b) == where and b.dtype == np.float64 and b.shape == (memory.MIN_BYTES // 8,)


def test_small_arrays_are_plain_numpy_arrays():
    a = memory.empty((3, 4), np.float32, like=np.empty(0))
    assert a.base is None and a.shape == (3, 4) and a.dtype == np.float32


def test_release_gives_back_only_free_buffers():
    memory.release()
    kept = memory.empty(LARGE, np.float32, like=np.empty(0))
    freed = memory.empty((memory.MIN_BYTES // 2,), np.float32, like=np.empty(0))
    del freed
    assert memory.held_bytes() == 3 * memory.MIN_BYTES
    assert memory.release() == 2 * memory.MIN_BYTES
    assert memory.held_bytes() == memory.MIN_BYTES
    kept[...] = 0  # still usable
    del kept
    assert memory.release() == memory.MIN_BYTES and memory.held_bytes() == 0


def test_ops_on_reused_memory_keep_every_live_result(rng):
    """A chain of large ops (each result from the pool) leaves every live result intact."""
    x = mm.Tensor(rng.standard_normal(LARGE).astype(np.float32), requires_grad=True)
    y = mm.relu(x)
    z = mm.add(y, x)
    expected_y, expected_z = np.maximum(x.data, 0), np.maximum(x.data, 0) + x.data
    w = mm.relu(z)  # more pool arrays while y and z live
    z.backward(np.ones(LARGE, np.float32))
    np.testing.assert_array_equal(y.data, expected_y)
    np.testing.assert_array_equal(z.data, expected_z)
    np.testing.assert_array_equal(w.data, np.maximum(expected_z, 0))
    np.testing.assert_array_equal(x.grad, (x.data > 0) + 1.0)


def test_scratch_is_one_growing_buffer_per_name_and_thread():
    import threading
    a = memory.scratch("test", (4, 5), np.float32, like=np.empty(0))
    b = memory.scratch("test", (2, 3), np.float64, like=np.empty(0))
    assert address(a) == address(b) and b.shape == (2, 3) and b.dtype == np.float64
    assert not np.shares_memory(memory.scratch("other", (4, 5), np.float32, like=np.empty(0)), a)
    bigger = memory.scratch("test", (100,), np.float64, like=np.empty(0))
    assert bigger.size == 100  # grown, a new buffer
    elsewhere = []
    worker = threading.Thread(target=lambda: elsewhere.append(memory.scratch("test", (100,), np.float64, like=np.empty(0))))
    worker.start(), worker.join()
    assert not np.shares_memory(elsewhere[0], bigger)


def test_glibc_is_asked_to_keep_freed_memory_and_elsewhere_nothing_changes(monkeypatch):
    """On glibc (this project's CI and development machines) the settings take; a C library
    without mallopt, or one that refuses a setting, leaves everything as it was."""
    import ctypes
    import platform
    from types import SimpleNamespace
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert memory.KEEPS_FREED_MEMORY and memory.keep_freed_memory()

    class Mallopt:  # as ctypes gives it: a callable that takes argtypes and restype
        def __init__(self, result):
            self.result, self.calls = result, []

        def __call__(self, parameter, value):
            self.calls.append((parameter, value))
            return self.result
    refusing, accepting = Mallopt(0), Mallopt(1)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert not memory.keep_freed_memory()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: SimpleNamespace(mallopt=refusing))
    assert not memory.keep_freed_memory()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: SimpleNamespace(mallopt=accepting))
    assert memory.keep_freed_memory()
    assert accepting.calls == [(memory.M_MMAP_THRESHOLD, memory.MIN_BYTES), (memory.M_TRIM_THRESHOLD, 2**31 - 1)]
