"""minimenet: MEnet (Metric Expression Network, Cai et al.) from scratch on NumPy and CuPy."""
from . import backend, nn, optim
from .backend import BackendError, device, xp
from .conv import conv2d, conv_transpose2d
from .gradcheck import GradcheckError, gradcheck
from .losses import metric_loss, softmax_cross_entropy
from .nn import manual_seed
from .norm import batch_norm, l2_normalize
from .optim import SGD
from .resize import resize, upsample_nearest
from .tensor import Tensor, add, concat, mean, mul, no_grad, reduce_sum, relu, reshape, tanh

__version__ = "0.1.0"
