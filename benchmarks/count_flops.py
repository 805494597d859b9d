"""Parameters and forward GFLOP per image of each MEnet preset, counted from the layers' shapes.

    python benchmarks/count_flops.py

A FLOP is half a multiply-add: a convolution costs 2 x (output elements) x Ci kh kw, a transposed
convolution 2 x (input elements) x Co kh kw. Batch norm, ReLU, tanh and the upsampling are not
counted. The shapes come from one eval forward of a single zero image, counted where every
convolution of it runs, fused BRC and BRD included: the forward primitive ``conv._forward``
and, for a transposed convolution, the input-gradient primitive ``conv._input_grad``.
"""

import minimenet as mm
from minimenet import conv
from minimenet.config import PRESETS, network_config
from minimenet.model import MEnet


def forward_gflop(model):
    """(GFLOP of one image's forward, the number of convolution and transposed-convolution
    layers that it ran)."""
    multiply_adds, layers = 0, 0
    primitives = {"_forward": conv._forward, "_input_grad": conv._input_grad}

    def counted(primitive):
        def run(data, w, geometry, *args, **kwargs):
            nonlocal multiply_adds, layers
            multiply_adds += geometry.multiply_adds
            layers += 1
            return primitive(data, w, geometry, *args, **kwargs)
        return run

    for name, primitive in primitives.items():
        setattr(conv, name, counted(primitive))
    try:
        size = model.config.image_size
        with mm.no_grad():
            model.eval()(mm.Tensor(mm.xp.zeros((1, 3, size, size), dtype=model.config.dtype)))
    finally:
        for name, primitive in primitives.items():
            setattr(conv, name, primitive)
    return 2 * multiply_adds / 1e9, layers


if __name__ == "__main__":
    for preset in PRESETS:
        model = MEnet(network_config(preset))
        gflop, layers = forward_gflop(model)
        print(f"{preset:>6}: {model.num_parameters():>12,} parameters, {layers} convolution layers, "
              f"{gflop:7.3f} GFLOP forward per image")
