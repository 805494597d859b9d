// metric_loss.cu: the centroid metric loss of MEnet (Cai et al., Eq. 3) with hard mining, and its
// two gradients. The NumPy reference is minimenet/losses.py, metric_loss_arrays.
//
// Run alone against its NumPy reference, in the CPU emulator (and on the GPU too, with
// MINIMENET_DEVICE=gpu on a GPU machine):
//   python -m pytest tests/test_cuda_emulator.py -k "metric"
//
// Input: unit features y (B, C, H, W) (L2-normalised per pixel) and labels (B, H, W) with
// 1 = salient, anything else = background. Write P = H W, y_i for pixel i's C-vector, and r(i)
// for its region: 1 = salient (S), 0 = background (G).
//
// Per image n, with region counts n_1 = |S|, n_0 = |G| and centroids
//   c_r = (1 / max(n_r, 1)) sum_{i in region r} y_i      (a region of 0 pixels has centroid 0),
// each pixel has the term
//   term_i = ||y_i - c_own||^2 - ||y_i - c_other||^2      (own = r(i), other = 1 - r(i)).
// Hard mining (losses.hard_negative_mask, done on the host with the array module's argsort)
// turns the terms into a 0/1 mask m: the minority region whole plus as many majority pixels
// with the largest terms; nothing in an image of a single region. Then
//   loss = sum_n sum_i m_i term_i / P
// and, for pixel j (own region R, other R'), the two gradients w.r.t. y_j:
//   "authors" (centroids held constant):  m_j (c_other - c_own) / (C P)
//   "exact" (mask held fixed, through the centroids; d c_R / d y_j = I / n_R):
//     [2 m_j (c_other - c_own)
//      + (2 / n_R) ((M_R' - k_R' c_R) - (M_R - k_R c_R))] / P
//   where M_r = sum_{i in region r} m_i y_i and k_r = sum_{i in region r} m_i are the mined sums
//   and counts: (M_r - k_r c_R) is sum_{i in r} m_i (y_i - c_R), the derivative of the other
//   region's -||y_i - c_R||^2 and of the own region's ||y_i - c_R||^2 with respect to c_R.
//
// Launches (minimenet/cuda/metric.py), all with METRIC_BLOCK threads per block and
// pixel_blocks = ceil(P / METRIC_BLOCK):
//   1. metric_region_sums      grid (pixel_blocks, C, B), weights 1: per pixel block, summed by
//                              the host: sums[n, r, c] = n_r c_r, counts[n, r] = n_r.
//   2. metric_terms            grid (pixel_blocks, B): terms[n, i].
//   3. (host) m = hard_negative_mask(terms, labels).
//   4. metric_region_sums      again with weights m ("exact" only): M_r and k_r.
//   5. metric_loss_and_grad    grid (pixel_blocks, B): grad[n, c, i], and the loss per pixel
//                              block, summed by the host.
// No atomicAdd: every block writes its own partial sums and the host adds them in a fixed order,
// so the loss and the gradient are the same on every run.

constexpr int METRIC_BLOCK = 256;  // a power of two: the tree reductions below halve it

// Weighted region sums over the pixels of block b = blockIdx.x, with w_i an int weight per pixel
// (all 1, or the mining mask):
//   block_sums[b, n, r, c] = sum over block b's pixels i of region r of w_i y[n, c, i]
//   block_counts[b, n, r]  = sum over block b's pixels i of region r of w_i   (by the c = 0 blocks)
// Each block reduces its METRIC_BLOCK pixels in shared memory and writes one partial sum per output.
extern "C" __global__ void metric_region_sums(
    const float* __restrict__ y, const int* __restrict__ labels, const int* __restrict__ weights,
    float* __restrict__ block_sums, int* __restrict__ block_counts,
    int channels, int pixels)
{
    __shared__ float salient_partial[METRIC_BLOCK];
    __shared__ float background_partial[METRIC_BLOCK];
    __shared__ int salient_count_partial[METRIC_BLOCK];
    __shared__ int background_count_partial[METRIC_BLOCK];

    const int n = blockIdx.z;
    const int c = blockIdx.y;
    const int t = threadIdx.x;
    const int i = blockIdx.x * METRIC_BLOCK + t;

    float salient_value = 0.0f;
    float background_value = 0.0f;
    int salient_weight = 0;
    int background_weight = 0;
    if (i < pixels) {
        const int weight = weights[n * pixels + i];
        const float value = static_cast<float>(weight) * y[(n * channels + c) * pixels + i];
        const bool is_salient = labels[n * pixels + i] == 1;
        salient_value = is_salient ? value : 0.0f;
        background_value = is_salient ? 0.0f : value;
        salient_weight = is_salient ? weight : 0;
        background_weight = is_salient ? 0 : weight;
    }
    salient_partial[t] = salient_value;
    background_partial[t] = background_value;
    salient_count_partial[t] = salient_weight;
    background_count_partial[t] = background_weight;
    __syncthreads();

    // Tree reduction: after the step with stride h, slot t < h holds the sum of slots t, t + h,
    // t + 2h, ... of the original. Every thread reaches every barrier; only the adding is guarded.
    for (int stride = METRIC_BLOCK / 2; stride > 0; stride /= 2) {
        if (t < stride) {
            salient_partial[t] += salient_partial[t + stride];
            background_partial[t] += background_partial[t + stride];
            salient_count_partial[t] += salient_count_partial[t + stride];
            background_count_partial[t] += background_count_partial[t + stride];
        }
        __syncthreads();
    }

    if (t == 0) {
        const int image = blockIdx.x * gridDim.z + n;  // (b, n) in block_sums' first two axes
        block_sums[(image * 2 + 1) * channels + c] = salient_partial[0];
        block_sums[(image * 2 + 0) * channels + c] = background_partial[0];
        if (c == 0) {
            block_counts[image * 2 + 1] = salient_count_partial[0];
            block_counts[image * 2 + 0] = background_count_partial[0];
        }
    }
}

// Per-pixel terms, with the centroids c_r = sums[n, r] / max(counts[n, r], 1):
//   terms[n, i] = sum_c (y[n, c, i] - c_own[c])^2 - (y[n, c, i] - c_other[c])^2
// One thread per pixel, no shared memory.
extern "C" __global__ void metric_terms(
    const float* __restrict__ y, const int* __restrict__ labels,
    const float* __restrict__ sums, const int* __restrict__ counts,
    float* __restrict__ terms,
    int channels, int pixels)
{
    const int n = blockIdx.y;
    const int i = blockIdx.x * METRIC_BLOCK + threadIdx.x;
    if (i >= pixels) return;  // no barrier in this kernel

    const int own = labels[n * pixels + i] == 1 ? 1 : 0;
    const int other = 1 - own;
    const float own_count = static_cast<float>(max(counts[n * 2 + own], 1));
    const float other_count = static_cast<float>(max(counts[n * 2 + other], 1));
    const float* own_sums = sums + (n * 2 + own) * channels;
    const float* other_sums = sums + (n * 2 + other) * channels;

    float term = 0.0f;
    for (int c = 0; c < channels; ++c) {
        const float value = y[(n * channels + c) * pixels + i];
        const float to_own = value - own_sums[c] / own_count;
        const float to_other = value - other_sums[c] / other_count;
        term += to_own * to_own - to_other * to_other;
    }
    terms[n * pixels + i] = term;
}

// The gradient and the loss, with m = mask, the centroids as in metric_terms, and the mined sums
// M_r = mined_sums[n, r], k_r = mined_counts[n, r] (read only when exact != 0):
//   exact == 0:  grad[n, c, i] = m_i (c_other[c] - c_own[c]) / (C P)
//   exact != 0:  grad[n, c, i] = [2 m_i (c_other[c] - c_own[c])
//                                 + (2 / max(n_own, 1)) ((M_other[c] - k_other c_own[c])
//                                                        - (M_own[c] - k_own c_own[c]))] / P
//   block_losses[n, b] = sum over block b's pixels i of m_i terms[n, i] / P
extern "C" __global__ void metric_loss_and_grad(
    const float* __restrict__ y, const int* __restrict__ labels,
    const float* __restrict__ terms, const int* __restrict__ mask,
    const float* __restrict__ sums, const int* __restrict__ counts,
    const float* __restrict__ mined_sums, const int* __restrict__ mined_counts,
    float* __restrict__ grad, float* __restrict__ block_losses,
    int channels, int pixels, int exact)
{
    __shared__ float loss_partial[METRIC_BLOCK];

    const int n = blockIdx.y;
    const int t = threadIdx.x;
    const int i = blockIdx.x * METRIC_BLOCK + t;
    const float inv_pixels = 1.0f / static_cast<float>(pixels);

    float mined_term = 0.0f;
    if (i < pixels) {
        const int own = labels[n * pixels + i] == 1 ? 1 : 0;
        const int other = 1 - own;
        const float m = static_cast<float>(mask[n * pixels + i]);
        mined_term = m * terms[n * pixels + i];

        const float own_count = static_cast<float>(max(counts[n * 2 + own], 1));
        const float other_count = static_cast<float>(max(counts[n * 2 + other], 1));
        const float* own_sums = sums + (n * 2 + own) * channels;
        const float* other_sums = sums + (n * 2 + other) * channels;
        if (exact) {
            const float* own_mined = mined_sums + (n * 2 + own) * channels;
            const float* other_mined = mined_sums + (n * 2 + other) * channels;
            const float own_mined_count = static_cast<float>(mined_counts[n * 2 + own]);
            const float other_mined_count = static_cast<float>(mined_counts[n * 2 + other]);
            const float via_centroid_scale = 2.0f / own_count;
            for (int c = 0; c < channels; ++c) {
                const float own_centroid = own_sums[c] / own_count;
                const float other_centroid = other_sums[c] / other_count;
                const float via_centroid = via_centroid_scale * ((other_mined[c] - other_mined_count * own_centroid)
                                                                 - (own_mined[c] - own_mined_count * own_centroid));
                grad[(n * channels + c) * pixels + i] = (2.0f * m * (other_centroid - own_centroid) + via_centroid) * inv_pixels;
            }
        } else {
            const float scale = m / (static_cast<float>(channels) * static_cast<float>(pixels));
            for (int c = 0; c < channels; ++c) {
                const float own_centroid = own_sums[c] / own_count;
                const float other_centroid = other_sums[c] / other_count;
                grad[(n * channels + c) * pixels + i] = scale * (other_centroid - own_centroid);
            }
        }
    }
    loss_partial[t] = mined_term;
    __syncthreads();

    for (int stride = METRIC_BLOCK / 2; stride > 0; stride /= 2) {
        if (t < stride) loss_partial[t] += loss_partial[t + stride];
        __syncthreads();
    }

    if (t == 0) block_losses[n * gridDim.x + blockIdx.x] = loss_partial[0] * inv_pixels;
}
