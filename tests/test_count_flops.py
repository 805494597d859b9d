"""benchmarks/count_flops.py counts every convolution a forward runs, fused ones included."""
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import minimenet as mm
from minimenet import nn
from minimenet.config import network_config
from minimenet.model import MEnet

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import count_flops  # noqa: E402


class TwoLayers:
    """A convolution 3 -> 4 (3 x 3, padding 1) on 8 x 8, then a transposed one 4 -> 2 (2 x 2, stride 2)."""
    config = SimpleNamespace(image_size=8, dtype="float32")

    def __init__(self):
        rng = np.random.default_rng(0)
        self.w1 = mm.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
        self.w2 = mm.Tensor(rng.standard_normal((4, 2, 2, 2)).astype(np.float32))

    def eval(self):
        return self

    def __call__(self, x):
        return mm.conv_transpose2d(mm.conv2d(x, self.w1, padding=1), self.w2, stride=2)


def test_counts_a_convolution_and_a_transposed_one_by_hand():
    conv = 2 * (4 * 8 * 8) * 3 * 3 * 3        # every output times Ci kh kw
    transposed = 2 * (4 * 8 * 8) * 2 * 2 * 2  # every input times Co kh kw
    gflop, layers = count_flops.forward_gflop(TwoLayers())
    assert layers == 2
    assert gflop == pytest.approx((conv + transposed) / 1e9, rel=1e-12)


def test_counts_every_layer_of_the_network_with_its_fused_ones():
    model = MEnet(network_config("tiny"))
    primitives = mm.conv._forward, mm.conv._input_grad
    convolutions = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    gflop, layers = count_flops.forward_gflop(model)
    assert layers == len(convolutions) == 72
    # Every layer's work is at least its weight's multiply-adds at one output pixel.
    assert gflop * 1e9 >= 2 * sum(m.weight.data.size for m in convolutions)
    assert (mm.conv._forward, mm.conv._input_grad) == primitives  # put back after counting
