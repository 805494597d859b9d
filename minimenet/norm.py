"""Normalisation ops: batch normalisation and L2 normalisation over channels; the eval batch norm
as an affine map (and with a ReLU, on arrays) for the inference-time BRC."""
from . import memory, threads
from .backend import array_module
from .tensor import Tensor, check_dtypes, maximum_zero


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
    xp, data = x.xp, x.data
    count = x.shape[0] * x.shape[2] * x.shape[3]
    if training and count < 2:
        raise ValueError(f"batch_norm: training mode needs more than one value per channel to estimate a variance, "
                         f"got input of shape {x.shape}; use a batch larger than 1 or call model.eval()")
    # Every channel is normalised on its own, so groups of channels go to the worker threads.
    groups = threads.channel_slices(data)
    if training:
        mu, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    else:
        mu, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        eval_scale, eval_shift = eval_affine(gamma.data, beta.data, running_mean, running_var, eps, x.dtype)
    inv_std = xp.empty(c, dtype=x.dtype)
    y = memory.empty_like(data)

    def normalise(channels):
        x_c, y_c = data[:, channels], y[:, channels]
        if training:
            mu[channels] = _channel_sum(x_c) / count
            xp.subtract(x_c, _per_channel(mu[channels]), out=y_c)
            var[channels] = _channel_dot(y_c, y_c) / count
        inv_std[channels] = 1.0 / xp.sqrt(var[channels] + eps)
        if training:
            y_c *= _per_channel(gamma.data[channels] * inv_std[channels])
            y_c += _per_channel(beta.data[channels])
        else:  # the statistics are constants: y = x scale + shift, two passes over x
            xp.multiply(x_c, _per_channel(eval_scale[channels]), out=y_c)
            y_c += _per_channel(eval_shift[channels])
    threads.parallel(normalise, groups)
    if training:
        running_mean *= 1 - momentum
        running_mean += momentum * mu
        running_var *= 1 - momentum
        running_var += momentum * var * count / (count - 1)

    def backward(g):
        d_x, d_gamma, d_beta = memory.empty_like(data), xp.empty(c, dtype=g.dtype), xp.empty(c, dtype=g.dtype)

        def differentiate(channels):
            g_c, d_c, scale = g[:, channels], d_x[:, channels], inv_std[channels]
            # x - mu again from x, which the graph keeps anyway (it is this op's input): keeping
            # x_hat from the forward pass would hold one more full-size array per layer until here.
            centred = xp.subtract(data[:, channels], _per_channel(mu[channels]), out=d_c)
            d_gamma[channels] = _channel_dot(g_c, centred) * scale
            d_beta[channels] = _channel_sum(g_c)
            if training:
                # mu and var depend on every x: with d_x_hat = gamma g, the two mean terms remove
                # its components along 1 and along x_hat, and those means are d_beta and d_gamma / count:
                # d_x = gamma scale (g - d_beta / count - (x - mu) scale d_gamma / count).
                d_c *= _per_channel(-scale * d_gamma[channels] / count)
                d_c += g_c
                d_c -= _per_channel(d_beta[channels] / count)
                d_c *= _per_channel(gamma.data[channels] * scale)
            else:
                xp.multiply(g_c, _per_channel(gamma.data[channels] * scale), out=d_c)
        threads.parallel(differentiate, groups)
        return d_x, d_gamma, d_beta
    return Tensor.from_op(y, (x, gamma, beta), backward, "batch_norm")


def eval_affine(gamma, beta, running_mean, running_var, eps=1e-5, dtype=None):
    """Batch norm in eval mode as y = x scale + shift per channel: (scale, shift) with
    scale = gamma / sqrt(running_var + eps) and shift = beta - running_mean scale, in ``dtype``
    (gamma's by default)."""
    dtype = dtype or gamma.dtype
    scale = (gamma / array_module(gamma).sqrt(running_var.astype(dtype) + eps)).astype(dtype)
    return scale, (beta - running_mean.astype(dtype) * scale).astype(dtype)


def relu_affine(x, scale, shift, out=None):
    """relu(x scale + shift), scale and shift (C,) per channel of x (B, C, H, W), into ``out``
    (new memory by default), an image at a time: a batch norm in eval mode (``eval_affine``) and
    a ReLU on arrays, for the inference-time BRC (``fused.batch_norm_relu_conv2d``)."""
    xp, y = array_module(x), memory.empty_like(x) if out is None else out
    scale, shift = scale.reshape(-1, 1, 1), shift.reshape(-1, 1, 1)
    for image, result in zip(x, y):
        xp.multiply(image, scale, out=result)
        result += shift
        maximum_zero(result, result)
    return y


def _per_channel(values):
    """A vector over channels, shaped to broadcast over (N, C, H, W)."""
    return values.reshape(1, -1, 1, 1)


def _channel_dot(a, b):
    """sum over (N, H, W) of a * b for each channel, in one pass without an a * b temporary."""
    return array_module(a).einsum("nchw,nchw->c", a, b)


def _channel_sum(a):
    """sum over (N, H, W) for each channel (NumPy's einsum does it in a third of the time of
    ``a.sum(axis=(0, 2, 3))``: 21 against 67 us on 8 x 16 x 64 x 64 float32)."""
    return array_module(a).einsum("nchw->c", a)


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
