"""Shared fixtures: the array backends a test runs on, and a seeded random generator.

``xp`` parametrises a test over the array modules that are actually usable here: NumPy always,
CuPy only when minimenet selected the GPU (``minimenet.backend.device == "gpu"``, e.g. under
``MINIMENET_DEVICE=gpu``). On a CPU-only machine the CuPy case is not generated at all rather
than skipped, so a green run never counts a check that did not run.
"""
import numpy
import pytest

from minimenet import backend


def available_backends():
    modules = [numpy]
    if backend.device == "gpu":
        import cupy
        modules.append(cupy)
    return modules


BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS, ids=[m.__name__ for m in BACKENDS])
def xp(request):
    """The array module (numpy or cupy) a backend-parametrised test builds its inputs with."""
    return request.param


@pytest.fixture
def rng():
    """A fresh, fixed-seed NumPy generator per test, so every test is reproducible on its own."""
    return numpy.random.default_rng(1234)
