// conv2d.cu: 2-D convolution (cross-correlation, as in every deep-learning framework) on NCHW
// float32 tensors, forward and both gradients, each as an implicit GEMM.
//
// Run alone against its NumPy reference, in the CPU emulator (and on the GPU too, with
// MINIMENET_DEVICE=gpu on a GPU machine):
//   python -m pytest tests/test_cuda_emulator.py -k "conv2d and simple"
//
// Notation used in every comment below:
//   x  (B, Ci, H, W)       input            w  (Co, Ci, kh, kw)  weight
//   y  (B, Co, Ho, Wo)     output           dy, dx, dw           gradients of a scalar loss
//   stride (sh, sw), zero padding (ph, pw),  Ho = (H + 2 ph - kh) / sh + 1,  Wo likewise.
//
//   y[n, co, oh, ow] = sum over ci, r, s of  w[co, ci, r, s] * x[n, ci, oh sh - ph + r, ow sw - pw + s]
//
// with x read as 0 outside the image. Each kernel computes a matrix product C = A B whose
// operands are never stored: A and B are gathered from the tensors on the fly ("implicit" GEMM).
// A block of CONV_TILE x CONV_TILE threads owns one CONV_TILE x CONV_TILE tile of C, one element
// per thread, and walks the K dimension a CONV_TILE-wide slab at a time: every thread loads one
// element of A's slab and one of B's into shared memory, the block waits, and then each thread
// takes a CONV_TILE-long dot product from shared memory. Each loaded element is thereby reused
// CONV_TILE times instead of being read again from global memory by every thread that needs it.
//
// Launch (minimenet/cuda/conv.py): block (CONV_TILE, CONV_TILE); grid.x covers the GEMM's
// columns (N), grid.y its rows (M); threadIdx.x runs along N so that neighbouring threads touch
// neighbouring pixels and their global loads coalesce.
//
// Indices are int: every tensor must have fewer than 2^31 elements (conv.py checks).
//
// The same three kernels serve ConvTranspose2d with the roles swapped (see conv.py).

constexpr int CONV_TILE = 16;

// Forward:  y = W X
//
//   M = Co, N = B Ho Wo (column p = (n, oh, ow)), K = Ci kh kw (index k = (ci, r, s)),
//   W[co, k]   = w[co, ci, r, s]                      (w itself, read as a Co x K matrix)
//   X[k, p]    = x[n, ci, oh sh - ph + r, ow sw - pw + s]   (0 in the padding)
//   y[n, co, oh, ow] = sum_k W[co, k] X[k, p]
extern "C" __global__ void conv2d_forward(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    __shared__ float weight_tile[CONV_TILE][CONV_TILE];  // [row m][slab column k]
    __shared__ float input_tile[CONV_TILE][CONV_TILE];   // [slab row k][column p]

    const int kernel_area = kernel_height * kernel_width;
    const int out_pixels = out_height * out_width;
    const int gemm_m = out_channels;
    const int gemm_n = batch * out_pixels;
    const int gemm_k = in_channels * kernel_area;

    const int tile_row = threadIdx.y;
    const int tile_col = threadIdx.x;
    const int co = blockIdx.y * CONV_TILE + tile_row;  // the output channel this thread sums
    const int p = blockIdx.x * CONV_TILE + tile_col;   // the output pixel this thread sums

    // This thread loads X's column p in every slab, so p's coordinates are worked out once.
    const bool p_in_range = p < gemm_n;
    const int n = p / out_pixels;
    const int oh = (p % out_pixels) / out_width;
    const int ow = p % out_width;
    const int window_top = oh * stride_h - pad_h;
    const int window_left = ow * stride_w - pad_w;

    float sum = 0.0f;
    for (int slab = 0; slab < gemm_k; slab += CONV_TILE) {
        const int k_of_w = slab + tile_col;
        weight_tile[tile_row][tile_col] =
            (co < gemm_m && k_of_w < gemm_k) ? w[co * gemm_k + k_of_w] : 0.0f;

        const int k_of_x = slab + tile_row;
        float x_value = 0.0f;
        if (p_in_range && k_of_x < gemm_k) {
            const int ci = k_of_x / kernel_area;
            const int ih = window_top + (k_of_x % kernel_area) / kernel_width;
            const int iw = window_left + k_of_x % kernel_width;
            if (ih >= 0 && ih < in_height && iw >= 0 && iw < in_width)
                x_value = x[((n * in_channels + ci) * in_height + ih) * in_width + iw];
        }
        input_tile[tile_row][tile_col] = x_value;
        __syncthreads();

        for (int k = 0; k < CONV_TILE; ++k)
            sum += weight_tile[tile_row][k] * input_tile[k][tile_col];
        __syncthreads();  // the next slab overwrites tiles other threads may still be reading
    }

    if (co < gemm_m && p_in_range)
        y[(n * out_channels + co) * out_pixels + oh * out_width + ow] = sum;
}

// Input gradient:  dx = W^T DY
//
// Differentiating y by x: input pixel (ih, iw) met weight tap (r, s) in output pixel (oh, ow)
// exactly when oh sh - ph + r = ih and ow sw - pw + s = iw. So
//
//   dx[n, ci, ih, iw] = sum over co, r, s with th = ih + ph - r, tw = iw + pw - s both
//                       divisible by the stride and oh = th / sh in [0, Ho), ow = tw / sw in [0, Wo),
//                       of  w[co, ci, r, s] * dy[n, co, oh, ow]
//
//   M = Ci, N = B H W (column p = (n, ih, iw)), K = Co kh kw (index k = (co, r, s)),
//   Wt[ci, k] = w[co, ci, r, s],   DY[k, p] = dy[n, co, oh, ow] (0 when no such oh, ow).
//
// H and W are the input's, passed in rather than derived from Ho and Wo: a strided convolution
// maps several input sizes to the same output size, and rows and columns beyond the last one any
// window touched (ConvTranspose2d's output_padding) simply get no contributions, i.e. 0.
extern "C" __global__ void conv2d_input_grad(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    __shared__ float weight_tile[CONV_TILE][CONV_TILE];  // [row ci][slab column k]
    __shared__ float grad_tile[CONV_TILE][CONV_TILE];    // [slab row k][column p]

    const int kernel_area = kernel_height * kernel_width;
    const int in_pixels = in_height * in_width;
    const int out_pixels = out_height * out_width;
    const int gemm_m = in_channels;
    const int gemm_n = batch * in_pixels;
    const int gemm_k = out_channels * kernel_area;

    const int tile_row = threadIdx.y;
    const int tile_col = threadIdx.x;
    const int ci = blockIdx.y * CONV_TILE + tile_row;  // the input channel this thread sums
    const int p = blockIdx.x * CONV_TILE + tile_col;   // the input pixel this thread sums

    const bool p_in_range = p < gemm_n;
    const int n = p / in_pixels;
    const int ih = (p % in_pixels) / in_width;
    const int iw = p % in_width;

    float sum = 0.0f;
    for (int slab = 0; slab < gemm_k; slab += CONV_TILE) {
        const int k_of_w = slab + tile_col;
        float w_value = 0.0f;
        if (ci < gemm_m && k_of_w < gemm_k) {
            const int co = k_of_w / kernel_area;
            w_value = w[(co * in_channels + ci) * kernel_area + k_of_w % kernel_area];
        }
        weight_tile[tile_row][tile_col] = w_value;

        const int k_of_dy = slab + tile_row;
        float dy_value = 0.0f;
        if (p_in_range && k_of_dy < gemm_k) {
            const int co = k_of_dy / kernel_area;
            const int th = ih + pad_h - (k_of_dy % kernel_area) / kernel_width;
            const int tw = iw + pad_w - k_of_dy % kernel_width;
            // th >= 0 must be tested, not left to the divisibility test: in C, -2 % 2 == 0 and
            // -2 / 2 == -1, which would read the row before the image.
            if (th >= 0 && tw >= 0 && th % stride_h == 0 && tw % stride_w == 0) {
                const int oh = th / stride_h;
                const int ow = tw / stride_w;
                if (oh < out_height && ow < out_width)
                    dy_value = dy[(n * out_channels + co) * out_pixels + oh * out_width + ow];
            }
        }
        grad_tile[tile_row][tile_col] = dy_value;
        __syncthreads();

        for (int k = 0; k < CONV_TILE; ++k)
            sum += weight_tile[tile_row][k] * grad_tile[k][tile_col];
        __syncthreads();
    }

    if (ci < gemm_m && p_in_range)
        dx[(n * in_channels + ci) * in_pixels + ih * in_width + iw] = sum;
}

// Weight gradient:  dw = DY X^T
//
// Differentiating y by w[co, ci, r, s] picks out the input pixel that tap met in every window:
//
//   dw[co, ci, r, s] = sum over n, oh, ow of  dy[n, co, oh, ow] * x[n, ci, oh sh - ph + r, ow sw - pw + s]
//
//   M = Co, N = Ci kh kw (column q = (ci, r, s)), K = B Ho Wo (index k = (n, oh, ow)),
//   DY[co, k] = dy[n, co, oh, ow],   X[k, q] = x[n, ci, oh sh - ph + r, ow sw - pw + s] (0 in the padding).
//
// Here K (every output pixel of the batch) is long and M N (the weight's size) is small, so the
// tiles of dw alone would give a GPU too few blocks. The grid's z dimension therefore splits K
// into gridDim.z slices ("split-K"); block z writes its slice's sums to dw_slices[z] (shape
// gridDim.z x Co x N), and the launcher adds the slices in a fixed order. No atomicAdd: the
// result is the same on every run, so a resumed training matches an uninterrupted one exactly.
extern "C" __global__ void conv2d_weight_grad(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw_slices,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    __shared__ float grad_tile[CONV_TILE][CONV_TILE];   // [row co][slab column k]
    __shared__ float input_tile[CONV_TILE][CONV_TILE];  // [slab row k][column q]

    const int kernel_area = kernel_height * kernel_width;
    const int out_pixels = out_height * out_width;
    const int gemm_m = out_channels;
    const int gemm_n = in_channels * kernel_area;
    const int gemm_k = batch * out_pixels;

    const int tile_row = threadIdx.y;
    const int tile_col = threadIdx.x;
    const int co = blockIdx.y * CONV_TILE + tile_row;  // the weight's output channel
    const int q = blockIdx.x * CONV_TILE + tile_col;   // the weight's (ci, r, s)

    const bool q_in_range = q < gemm_n;
    const int ci = q / kernel_area;
    const int r = (q % kernel_area) / kernel_width;
    const int s = q % kernel_width;

    // This block's slice of K: whole slabs, so that slab boundaries are the same in every slice.
    const int slices = static_cast<int>(gridDim.z);
    const int slabs_per_slice = ((gemm_k + CONV_TILE - 1) / CONV_TILE + slices - 1) / slices;
    const int slice_begin = static_cast<int>(blockIdx.z) * slabs_per_slice * CONV_TILE;
    const int slice_end = min(gemm_k, slice_begin + slabs_per_slice * CONV_TILE);

    float sum = 0.0f;
    for (int slab = slice_begin; slab < slice_end; slab += CONV_TILE) {
        const int k_of_dy = slab + tile_col;
        float dy_value = 0.0f;
        if (co < gemm_m && k_of_dy < slice_end) {
            const int n = k_of_dy / out_pixels;
            dy_value = dy[(n * out_channels + co) * out_pixels + k_of_dy % out_pixels];
        }
        grad_tile[tile_row][tile_col] = dy_value;

        const int k_of_x = slab + tile_row;
        float x_value = 0.0f;
        if (q_in_range && k_of_x < slice_end) {
            const int n = k_of_x / out_pixels;
            const int ih = ((k_of_x % out_pixels) / out_width) * stride_h - pad_h + r;
            const int iw = (k_of_x % out_width) * stride_w - pad_w + s;
            if (ih >= 0 && ih < in_height && iw >= 0 && iw < in_width)
                x_value = x[((n * in_channels + ci) * in_height + ih) * in_width + iw];
        }
        input_tile[tile_row][tile_col] = x_value;
        __syncthreads();

        for (int k = 0; k < CONV_TILE; ++k)
            sum += grad_tile[tile_row][k] * input_tile[k][tile_col];
        __syncthreads();
    }

    if (co < gemm_m && q_in_range)  // every block writes its slice, an empty one too (sum 0)
        dw_slices[(static_cast<long long>(blockIdx.z) * gemm_m + co) * gemm_n + q] = sum;
}
