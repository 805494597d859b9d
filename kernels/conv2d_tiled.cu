// conv2d_tiled.cu: the faster versions of the three convolution kernels of conv2d.cu.
//
// Run alone against its NumPy reference, in the CPU emulator (and on the GPU too, with
// MINIMENET_DEVICE=gpu on a GPU machine):
//   python -m pytest tests/test_cuda_emulator.py -k "conv2d and (tiled or tf32)"
//
// They compute exactly what conv2d.cu's kernels compute (same notation, same arguments, same
// three implicit GEMMs; read that file first), in two variants that share everything but the
// innermost product:
//
//   conv2d_*_tiled   float32 FMAs, each thread accumulating a 4 x 4 register tile of C;
//   conv2d_*_tf32    TF32 tensor cores (mma.sync m16n8k8, sm_80 and later): A and B rounded
//                    to TF32 (10-bit mantissa, as PyTorch's default for cuDNN convolutions),
//                    products and sums in float32.
//
// What is faster than conv2d.cu, and why:
//
//   * A block of 256 threads owns a TILE_M x TILE_N = 32 x 128 tile of C (the simple kernels:
//     16 x 16, one element per thread). Each value a thread reads from shared memory now feeds
//     4 FMAs instead of 1, and each global load feeds 32 or 128 outputs instead of 16.
//   * The K dimension is walked tap by tap: for each kernel tap (r, s), the channels in slabs of
//     TILE_K. Within a slab the tap is fixed, so where a pixel's window sits, and whether it is
//     inside the image, is worked out once per tap instead of with divisions for every element.
//     A slab whose channels run past the last one loads zeros: that wastes work only when a
//     channel count is far from a multiple of TILE_K (the 3-channel input layer).
//   * The weight gradient, whose K is the batch's pixels, decodes each slab's 16 pixels once per
//     thread and splits K over gridDim.z slices as conv2d.cu does.
//   * The input gradient runs one sub-pixel phase per block (see its comment), so that a strided
//     convolution's input gradient skips the taps that multiply only zeros.
//
// Not done yet (each would sit beside these, tested the same way): double-buffered shared
// memory with register prefetch, vectorised loads, and a staged epilogue.
//
// Launch (minimenet/cuda/conv.py): block (CONV_THREADS, 1, 1); grid.x over N in TILE_N,
// grid.y over M in TILE_M; grid.z is the input gradient's sh sw phases and the weight
// gradient's number of K slices.

constexpr int TILE_M = 32;
constexpr int TILE_N = 128;
constexpr int TILE_K = 16;
constexpr int CONV_THREADS = 256;
constexpr int ACCUMULATORS = TILE_M * TILE_N / CONV_THREADS;  // C elements per thread: 16

// Shared-memory rows are padded from 32 and 128 to 40 and 136 floats: a row stride of 8 (mod 32
// banks) makes the tensor-core fragment reads below, which touch rows k..k+3 and columns
// g..g+7 at once, hit 32 different banks.
constexpr int A_STRIDE = TILE_M + 8;
constexpr int B_STRIDE = TILE_N + 8;

// The slab a block works on: a[k][m] = A[m0 + m, slab + k], b[k][n] = B[slab + k, n0 + n].
struct SlabTiles {
    float a[TILE_K][A_STRIDE];
    float b[TILE_K][B_STRIDE];
};

// ------------------------------------------------------------------------------ the products
//
// Each "math" type owns this thread's ACCUMULATORS elements of the block's C tile:
//   prepare(v)             what is stored in the shared tiles for an operand value v;
//   accumulate(tiles)      acc += (this thread's part of) A_slab B_slab;
//   accumulator(e)         its e-th accumulator, which sits at (row(e), col(e)) of the block's tile.

// float32 FMAs. Thread t = 32 ty + tx holds C[ty + 8 i, tx + 32 j] for i, j in 0..3: within a
// warp ty is fixed, so a_tile reads are broadcasts and b_tile reads are 32 consecutive floats;
// the epilogue writes 32 consecutive columns (pixels) at a time.
struct FmaMath {
    int ty, tx;
    float acc[ACCUMULATORS];

    __device__ FmaMath() : ty(threadIdx.x / 32), tx(threadIdx.x % 32) {
        for (int e = 0; e < ACCUMULATORS; ++e) acc[e] = 0.0f;
    }
    __device__ static float prepare(float v) { return v; }
    __device__ int row(int e) const { return ty + 8 * (e / 4); }
    __device__ int col(int e) const { return tx + 32 * (e % 4); }
    __device__ float& accumulator(int e) { return acc[e]; }

    __device__ void accumulate(const SlabTiles& tiles) {
        for (int k = 0; k < TILE_K; ++k) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = tiles.a[k][ty + 8 * i];
            for (int j = 0; j < 4; ++j) b[j] = tiles.b[k][tx + 32 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[4 * i + j] += a[i] * b[j];
        }
    }
};

// TF32 tensor cores. mma.sync.m16n8k8 multiplies a 16 x 8 A by an 8 x 8 B into a 16 x 8 C held
// by the 32 lanes of a warp; lane l (group g = l / 4, t = l % 4 within the group) holds
//   A: a0 = A[g, t]  a1 = A[g + 8, t]  a2 = A[g, t + 4]  a3 = A[g + 8, t + 4]
//   B: b0 = B[t, g]  b1 = B[t + 4, g]
//   C: c0 = C[g, 2t] c1 = C[g, 2t + 1] c2 = C[g + 8, 2t] c3 = C[g + 8, 2t + 1]
// (PTX ISA, "Matrix fragments for mma.m16n8k8", .tf32). The 8 warps split the 32 x 128 block
// tile 2 x 4: warp w computes rows 16 (w % 2) .. +16 and columns 32 (w / 2) .. +32, four m16n8
// products per 8-deep step of K.
#ifdef CUDA_EMULATOR
// The emulator (cuda_emulator.h) defines tf32_round and mma_tf32_m16n8k8 in plain C++.
#else
// Both instructions need sm_80. The file still builds for older GPUs so that the float32 kernels
// run there; the tf32 ones would trap, and conv.py refuses them before launching.
__device__ __forceinline__ float tf32_round(float v) {  // to nearest, ties away from zero
#if __CUDA_ARCH__ >= 800
    unsigned int bits;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(v));
    return __uint_as_float(bits);
#else
    __trap();
    return v;
#endif
}

// d += A B for one m16n8k8 step; a, b and d hold this lane's fragments (layout above).
__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])),
          "r"(__float_as_uint(a[2])), "r"(__float_as_uint(a[3])),
          "r"(__float_as_uint(b[0])), "r"(__float_as_uint(b[1])));
#else
    __trap();
#endif
}
#endif

struct Tf32Math {
    int group, lane_in_group, warp_row, warp_col;
    float acc[4][4];  // [n8 block j][fragment element c]

    __device__ Tf32Math()
        : group((threadIdx.x % 32) / 4), lane_in_group(threadIdx.x % 4),
          warp_row(16 * ((threadIdx.x / 32) % 2)), warp_col(32 * ((threadIdx.x / 32) / 2)) {
        for (int j = 0; j < 4; ++j)
            for (int c = 0; c < 4; ++c) acc[j][c] = 0.0f;
    }
    __device__ static float prepare(float v) { return tf32_round(v); }
    __device__ int row(int e) const { return warp_row + group + 8 * ((e % 4) / 2); }
    __device__ int col(int e) const { return warp_col + 8 * (e / 4) + 2 * lane_in_group + e % 2; }
    __device__ float& accumulator(int e) { return acc[e / 4][e % 4]; }

    __device__ void accumulate(const SlabTiles& tiles) {
        const int g = group, t = lane_in_group;
        for (int k = 0; k < TILE_K; k += 8) {
            const float a[4] = {tiles.a[k + t][warp_row + g], tiles.a[k + t][warp_row + g + 8],
                                tiles.a[k + t + 4][warp_row + g], tiles.a[k + t + 4][warp_row + g + 8]};
            for (int j = 0; j < 4; ++j) {
                const int n = warp_col + 8 * j + g;
                const float b[2] = {tiles.b[k + t][n], tiles.b[k + t + 4][n]};
                mma_tf32_m16n8k8(acc[j], a, b);
            }
        }
    }
};

// ------------------------------------------------------------------------------ forward
//
// y = W X with K ordered (r, s, ci): for each tap, B[ci, p] = x[n, ci, oh sh - ph + r, ow sw - pw + s]
// and A[co, ci] = w[co, ci, r, s].
//
// Loads: thread t fetches b_tile[t / 128 + 2 i][t % 128] (i < 8), always the same pixel column,
// so neighbouring threads read neighbouring pixels; and a_tile[t % 16][t / 16 + 16 i] (i < 2).
template <class Math>
__device__ void conv2d_forward_body(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    __shared__ SlabTiles tiles;
    Math math;

    const int out_pixels = out_height * out_width;
    const int in_pixels = in_height * in_width;
    const int gemm_n = batch * out_pixels;
    const int m0 = blockIdx.y * TILE_M;
    const int n0 = blockIdx.x * TILE_N;

    const int b_col = threadIdx.x % TILE_N;
    const int b_row = threadIdx.x / TILE_N;
    const int p = n0 + b_col;
    const bool p_in_range = p < gemm_n;
    const int n = p_in_range ? p / out_pixels : 0;
    const int window_top = ((p % out_pixels) / out_width) * stride_h - pad_h;
    const int window_left = (p % out_width) * stride_w - pad_w;
    const float* x_image = x + static_cast<long long>(n) * in_channels * in_pixels;

    const int a_col = threadIdx.x % TILE_K;
    const int a_row = threadIdx.x / TILE_K;

    for (int r = 0; r < kernel_height; ++r) {
        for (int s = 0; s < kernel_width; ++s) {
            const int ih = window_top + r, iw = window_left + s;
            const bool inside = p_in_range && ih >= 0 && ih < in_height && iw >= 0 && iw < in_width;
            const int pixel_offset = ih * in_width + iw;
            for (int c0 = 0; c0 < in_channels; c0 += TILE_K) {
                for (int i = 0; i < TILE_K * TILE_N / CONV_THREADS; ++i) {
                    const int k = b_row + (CONV_THREADS / TILE_N) * i;
                    const int ci = c0 + k;
                    tiles.b[k][b_col] = Math::prepare(
                        inside && ci < in_channels ? x_image[ci * in_pixels + pixel_offset] : 0.0f);
                }
                for (int i = 0; i < TILE_M * TILE_K / CONV_THREADS; ++i) {
                    const int m = a_row + (CONV_THREADS / TILE_K) * i;
                    const int co = m0 + m, ci = c0 + a_col;
                    tiles.a[a_col][m] = Math::prepare(
                        co < out_channels && ci < in_channels
                            ? w[((co * in_channels + ci) * kernel_height + r) * kernel_width + s] : 0.0f);
                }
                __syncthreads();
                math.accumulate(tiles);
                __syncthreads();  // the next slab overwrites tiles other threads may still read
            }
        }
    }

    for (int e = 0; e < ACCUMULATORS; ++e) {
        const int co = m0 + math.row(e), q = n0 + math.col(e);
        if (co < out_channels && q < gemm_n) {
            const int image = q / out_pixels;
            y[(image * out_channels + co) * out_pixels + q % out_pixels] = math.accumulator(e);
        }
    }
}

// ------------------------------------------------------------------------------ input gradient
//
// dx = W^T DY with K ordered (r, s, co): for each tap, input pixel (ih, iw) takes dy at
// oh = (ih + ph - r) / sh, ow = (iw + pw - s) / sw when both divide exactly and land inside the
// output (see conv2d.cu), so B[co, p] = dy[n, co, oh, ow] or 0; A[ci, co] = w[co, ci, r, s].
//
// Sub-pixel phases: whether tap r divides exactly depends only on ih mod sh. So blockIdx.z picks
// a phase (ih mod sh, iw mod sw) and the block's columns are only that phase's pixels
// (ih = phase_h + sh i, iw = phase_w + sw j). A tap that misses the phase misses every pixel of
// the block and is skipped by all its threads alike: a stride-2 input gradient (and so every
// stride-2 transposed convolution's forward) does a quarter of the simple kernel's products.
// Same load pattern as the forward.
template <class Math>
__device__ void conv2d_input_grad_body(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    __shared__ SlabTiles tiles;
    Math math;

    const int phase_h = static_cast<int>(blockIdx.z) / stride_w;
    const int phase_w = static_cast<int>(blockIdx.z) % stride_w;
    const int phase_height = (in_height - phase_h + stride_h - 1) / stride_h;
    const int phase_width = (in_width - phase_w + stride_w - 1) / stride_w;
    const int phase_pixels = phase_height * phase_width;
    const int in_pixels = in_height * in_width;
    const int out_pixels = out_height * out_width;
    const int gemm_n = batch * phase_pixels;
    const int m0 = blockIdx.y * TILE_M;
    const int n0 = blockIdx.x * TILE_N;

    const int b_col = threadIdx.x % TILE_N;
    const int b_row = threadIdx.x / TILE_N;
    const int p = n0 + b_col;
    const bool p_in_range = p < gemm_n;
    const int n = p_in_range ? p / phase_pixels : 0;
    const int ih = p_in_range ? phase_h + stride_h * ((p % phase_pixels) / phase_width) : 0;
    const int iw = p_in_range ? phase_w + stride_w * (p % phase_width) : 0;
    const float* dy_image = dy + static_cast<long long>(n) * out_channels * out_pixels;

    const int a_col = threadIdx.x % TILE_K;
    const int a_row = threadIdx.x / TILE_K;

    for (int r = 0; r < kernel_height; ++r) {
        if ((phase_h + pad_h - r) % stride_h != 0) continue;  // the same for every thread
        for (int s = 0; s < kernel_width; ++s) {
            if ((phase_w + pad_w - s) % stride_w != 0) continue;
            // Both divide exactly now; th >= 0 still matters, as -2 / 2 == -1 in C.
            const int th = ih + pad_h - r, tw = iw + pad_w - s;
            const bool hit = p_in_range && th >= 0 && tw >= 0
                             && th / stride_h < out_height && tw / stride_w < out_width;
            const int pixel_offset = hit ? (th / stride_h) * out_width + tw / stride_w : 0;
            for (int c0 = 0; c0 < out_channels; c0 += TILE_K) {
                for (int i = 0; i < TILE_K * TILE_N / CONV_THREADS; ++i) {
                    const int k = b_row + (CONV_THREADS / TILE_N) * i;
                    const int co = c0 + k;
                    tiles.b[k][b_col] = Math::prepare(
                        hit && co < out_channels ? dy_image[co * out_pixels + pixel_offset] : 0.0f);
                }
                for (int i = 0; i < TILE_M * TILE_K / CONV_THREADS; ++i) {
                    const int m = a_row + (CONV_THREADS / TILE_K) * i;
                    const int ci = m0 + m, co = c0 + a_col;
                    tiles.a[a_col][m] = Math::prepare(
                        ci < in_channels && co < out_channels
                            ? w[((co * in_channels + ci) * kernel_height + r) * kernel_width + s] : 0.0f);
                }
                __syncthreads();
                math.accumulate(tiles);
                __syncthreads();
            }
        }
    }

    // Pixels no tap reaches (a phase with no taps, or beyond the last window) get 0.
    for (int e = 0; e < ACCUMULATORS; ++e) {
        const int ci = m0 + math.row(e), q = n0 + math.col(e);
        if (ci < in_channels && q < gemm_n) {
            const int image = q / phase_pixels;
            const int row = phase_h + stride_h * ((q % phase_pixels) / phase_width);
            const int col = phase_w + stride_w * (q % phase_width);
            dx[(image * in_channels + ci) * in_pixels + row * in_width + col] = math.accumulator(e);
        }
    }
}

// ------------------------------------------------------------------------------ weight gradient
//
// dw = DY X^T: M = Co, N = Ci kh kw (column q = (ci, r, s)), K = B Ho Wo (index k = (n, oh, ow)),
// DY[co, k] = dy[n, co, oh, ow], X[k, q] = x[n, ci, oh sh - ph + r, ow sw - pw + s].
//
// Loads: thread t always fetches slab row k = t % 16, so it decodes one pixel (n, oh, ow) per
// slab; it fetches b_tile[k][t / 16 + 16 i] (i < 8, columns fixed, their (ci, r, s) decoded once)
// and a_tile[k][t / 16 + 16 i] (i < 2). Neighbouring threads read neighbouring pixels.
// Split-K over gridDim.z, as in conv2d.cu: block z writes dw_slices[z], the launcher adds them.
template <class Math>
__device__ void conv2d_weight_grad_body(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw_slices,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    __shared__ SlabTiles tiles;
    Math math;

    constexpr int B_LOADS = TILE_K * TILE_N / CONV_THREADS;  // 8
    constexpr int A_LOADS = TILE_M * TILE_K / CONV_THREADS;  // 2
    constexpr int ROWS_PER_PASS = CONV_THREADS / TILE_K;     // 16

    const int kernel_area = kernel_height * kernel_width;
    const int in_pixels = in_height * in_width;
    const int out_pixels = out_height * out_width;
    const int gemm_n = in_channels * kernel_area;
    const int gemm_k = batch * out_pixels;
    const int m0 = blockIdx.y * TILE_M;
    const int n0 = blockIdx.x * TILE_N;

    const int k_local = threadIdx.x % TILE_K;
    const int first = threadIdx.x / TILE_K;

    // The (ci, r, s) of this thread's B columns: x's channel offset and the tap's shift.
    int channel_offset[B_LOADS], tap_r[B_LOADS], tap_s[B_LOADS];
    for (int i = 0; i < B_LOADS; ++i) {
        const int q = n0 + first + ROWS_PER_PASS * i;
        const bool q_in_range = q < gemm_n;
        channel_offset[i] = q_in_range ? (q / kernel_area) * in_pixels : -1;
        tap_r[i] = (q % kernel_area) / kernel_width;
        tap_s[i] = q % kernel_width;
    }

    const int slices = static_cast<int>(gridDim.z);
    const int slabs_per_slice = ((gemm_k + TILE_K - 1) / TILE_K + slices - 1) / slices;
    const int slice_begin = static_cast<int>(blockIdx.z) * slabs_per_slice * TILE_K;
    const int slice_end = min(gemm_k, slice_begin + slabs_per_slice * TILE_K);

    for (int slab = slice_begin; slab < slice_end; slab += TILE_K) {
        const int k = slab + k_local;
        const bool k_in_range = k < slice_end;
        const int n = k_in_range ? k / out_pixels : 0;
        const int pixel = k % out_pixels;
        const int window_top = (pixel / out_width) * stride_h - pad_h;
        const int window_left = (pixel % out_width) * stride_w - pad_w;
        const float* x_image = x + static_cast<long long>(n) * in_channels * in_pixels;

        for (int i = 0; i < B_LOADS; ++i) {
            const int ih = window_top + tap_r[i], iw = window_left + tap_s[i];
            const bool inside = k_in_range && channel_offset[i] >= 0
                                && ih >= 0 && ih < in_height && iw >= 0 && iw < in_width;
            tiles.b[k_local][first + ROWS_PER_PASS * i] =
                Math::prepare(inside ? x_image[channel_offset[i] + ih * in_width + iw] : 0.0f);
        }
        for (int i = 0; i < A_LOADS; ++i) {
            const int m = first + ROWS_PER_PASS * i;
            const int co = m0 + m;
            tiles.a[k_local][m] = Math::prepare(
                k_in_range && co < out_channels ? dy[(n * out_channels + co) * out_pixels + pixel] : 0.0f);
        }
        __syncthreads();
        math.accumulate(tiles);
        __syncthreads();
    }

    for (int e = 0; e < ACCUMULATORS; ++e) {
        const int co = m0 + math.row(e), q = n0 + math.col(e);
        if (co < out_channels && q < gemm_n)
            dw_slices[(static_cast<long long>(blockIdx.z) * out_channels + co) * gemm_n + q] = math.accumulator(e);
    }
}

// ------------------------------------------------------------------------------ entry points
//
// Same arguments as the kernels of conv2d.cu of the same name. Written out rather than made by a
// macro: these signatures are the interface, read as they stand by readers and by the launcher
// (minimenet/cuda/sources.py parses them).

extern "C" __global__ void conv2d_forward_tiled(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    conv2d_forward_body<FmaMath>(x, w, y, batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
        stride_h, stride_w, pad_h, pad_w, out_height, out_width);
}

extern "C" __global__ void conv2d_forward_tf32(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    conv2d_forward_body<Tf32Math>(x, w, y, batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
        stride_h, stride_w, pad_h, pad_w, out_height, out_width);
}

extern "C" __global__ void conv2d_input_grad_tiled(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    conv2d_input_grad_body<FmaMath>(dy, w, dx, batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
        stride_h, stride_w, pad_h, pad_w, out_height, out_width);
}

extern "C" __global__ void conv2d_input_grad_tf32(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    conv2d_input_grad_body<Tf32Math>(dy, w, dx, batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
        stride_h, stride_w, pad_h, pad_w, out_height, out_width);
}

extern "C" __global__ void conv2d_weight_grad_tiled(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw_slices,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    conv2d_weight_grad_body<FmaMath>(x, dy, dw_slices, batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
        stride_h, stride_w, pad_h, pad_w, out_height, out_width);
}

extern "C" __global__ void conv2d_weight_grad_tf32(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw_slices,
    int batch, int in_channels, int in_height, int in_width,
    int out_channels, int kernel_height, int kernel_width,
    int stride_h, int stride_w, int pad_h, int pad_w,
    int out_height, int out_width)
{
    conv2d_weight_grad_body<Tf32Math>(x, dy, dw_slices, batch, in_channels, in_height, in_width, out_channels, kernel_height, kernel_width,
        stride_h, stride_w, pad_h, pad_w, out_height, out_width);
}
