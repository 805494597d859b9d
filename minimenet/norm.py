"""Normalisation ops: batch normalisation and L2 normalisation over channels."""
from . import memory
from .backend import array_module
from .tensor import Tensor, check_dtypes


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalisation (Ioffe and Szegedy) over (N, H, W) for each channel of x (N, C, H, W).

    y = gamma * (x - mu) / sqrt(var + eps) + beta

    Training mode: mu and var are the batch's (var biased, i.e. divided by N*H*W), and the running
    statistics are updated in place with PyTorch's momentum convention,
        running = (1 - momentum) * running + momentum * batch_statistic,
    where the running variance takes the unbiased batch variance. Eval mode uses the running
    statistics and so treats mu and var as constants.
    """
    if x.ndim != 4:
        raise ValueError(f"batch_norm: input must be 4-D (batch, channels, height, width), got shape {x.shape}")
    c = x.shape[1]
    if gamma.shape != (c,) or beta.shape != (c,) or running_mean.shape != (c,) or running_var.shape != (c,):
        raise ValueError(f"batch_norm: input has {c} channels; gamma, beta and the running statistics must all have shape ({c},), "
                         f"got {gamma.shape}, {beta.shape}, {running_mean.shape}, {running_var.shape}")
    check_dtypes("batch_norm", x, gamma, beta)
    xp = x.xp
    axes, count = (0, 2, 3), x.shape[0] * x.shape[2] * x.shape[3]
    if training:
        if count < 2:
            raise ValueError(f"batch_norm: training mode needs more than one value per channel to estimate a variance, "
                             f"got input of shape {x.shape}; use a batch larger than 1 or call model.eval()")
        mu = x.data.mean(axis=axes)
        centred = xp.subtract(x.data, mu.reshape(1, c, 1, 1), out=memory.empty_like(x.data))
        var = _channel_dot(centred, centred) / count
        running_mean *= 1 - momentum
        running_mean += momentum * mu
        running_var *= 1 - momentum
        running_var += momentum * var * count / (count - 1)
    else:
        mu, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        centred = xp.subtract(x.data, mu.reshape(1, c, 1, 1), out=memory.empty_like(x.data))
    inv_std = (1.0 / xp.sqrt(var + eps)).reshape(1, c, 1, 1)
    g4, b4 = gamma.data.reshape(1, c, 1, 1), beta.data.reshape(1, c, 1, 1)
    mu4 = mu.reshape(1, c, 1, 1)

    def backward(g):
        # x_hat again from x, which the graph keeps anyway (it is this op's input): keeping x_hat
        # from the forward pass would hold one more full-size array per layer until here.
        x_hat = xp.subtract(x.data, mu4, out=memory.empty_like(x.data))
        x_hat *= inv_std
        d_gamma = _channel_dot(g, x_hat)
        d_beta = g.sum(axis=axes)
        if training:
            # mu and var depend on every x: with d_x_hat = gamma g, the two mean terms remove its
            # components along 1 and along x_hat, and those means are d_beta and d_gamma / count.
            d_x = x_hat
            d_x *= (-d_gamma / count).reshape(1, c, 1, 1)
            d_x += g
            d_x -= (d_beta / count).reshape(1, c, 1, 1)
            d_x *= g4 * inv_std
        else:
            d_x = xp.multiply(g, g4 * inv_std, out=memory.empty_like(g))
        return d_x, d_gamma, d_beta
    y = centred  # in place: centred is not needed again, and this saves a full-size array
    y *= g4 * inv_std
    y += b4
    return Tensor.from_op(y, (x, gamma, beta), backward, "batch_norm")


def _channel_dot(a, b):
    """sum over (N, H, W) of a * b for each channel, in one pass without an a * b temporary."""
    return array_module(a).einsum("nchw,nchw->c", a, b)


def l2_normalize(x, eps=1e-12):
    """y_c = x_c / sqrt(sum_c' x_c'^2 + eps) over the channel axis of x (N, C, H, W).

    ``eps`` keeps the op defined at x = 0 and bounds its gradient by about 1/sqrt(eps): the
    Jacobian is (I - y y^T) / sqrt(|x|^2 + eps) plus an eps term, which grows as |x| shrinks.
    Whatever eps, |y| < 1, so every feature lies in the unit ball.
    """
    if x.ndim < 2:
        raise ValueError(f"l2_normalize: input must have a channel axis (N, C, ...), got shape {x.shape}")
    norm = x.xp.sqrt((x.data * x.data).sum(axis=1, keepdims=True) + eps)
    y = x.data / norm

    def backward(g):
        return ((g - y * (g * y).sum(axis=1, keepdims=True)) / norm,)
    return Tensor.from_op(y, (x,), backward, "l2_normalize")
