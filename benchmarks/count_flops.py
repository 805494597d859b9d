"""Parameters and forward GFLOP per image of each MEnet preset, counted from the layers' shapes.

    python benchmarks/count_flops.py

A FLOP is half a multiply-add: a convolution costs 2 x (output elements) x Ci kh kw, a transposed
convolution 2 x (input elements) x Co kh kw. Batch norm, ReLU, tanh and the upsampling are not
counted. The shapes come from one forward pass of a single zero image.
"""
import numpy as np

import minimenet as mm
from minimenet import nn
from minimenet.config import PRESETS, network_config
from minimenet.model import MEnet


def forward_gflop(model):
    total = 0
    conv_forward, transposed_forward = nn.Conv2d.forward, nn.ConvTranspose2d.forward

    def counted_conv(layer, x):
        nonlocal total
        y = conv_forward(layer, x)
        total += 2 * y.data.size * int(np.prod(layer.weight.shape[1:]))
        return y

    def counted_transposed(layer, x):
        nonlocal total
        total += 2 * x.data.size * int(np.prod(layer.weight.shape[1:]))
        return transposed_forward(layer, x)

    nn.Conv2d.forward, nn.ConvTranspose2d.forward = counted_conv, counted_transposed
    try:
        size = model.config.image_size
        with mm.no_grad():
            model.eval()(mm.Tensor(mm.xp.zeros((1, 3, size, size), dtype=model.config.dtype)))
    finally:
        nn.Conv2d.forward, nn.ConvTranspose2d.forward = conv_forward, transposed_forward
    return total / 1e9


if __name__ == "__main__":
    for preset in PRESETS:
        model = MEnet(network_config(preset))
        print(f"{preset:>6}: {model.num_parameters():>12,} parameters, {forward_gflop(model):7.3f} GFLOP forward per image")
