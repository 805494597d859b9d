// metric_loss.cu: the centroid metric loss of MEnet (Cai et al., Eq. 3) and its gradient.
//
// Input: features f (B, C, H, W), already L2-normalised per pixel, and labels (B, H, W) with
// 1 = salient and 0 = background. Write P = H W.
//
// For image n, let S and G be its salient and background pixels, n_s = |S|, n_b = |G|, and
//   c_s = (1 / n_s) sum_{i in S} f_i,   c_b = (1 / n_b) sum_{i in G} f_i
// the region centroids (f_i is pixel i's C-vector). Each pixel is pulled towards its own
// region's centroid and pushed away from the other's:
//   term_i = ||f_i - c_own||^2 - ||f_i - c_other||^2
//   loss   = (1 / (B P)) sum over images with both regions, and their pixels, of term_i
// An image lacking a region has no "other" centroid and contributes 0 to the loss and gradient.
//
// Gradient. Summing term_i over one image's pixels (expand the squares and use
// sum_{i in S} f_i = n_s c_s):
//   sum_{i in S} term_i = -n_s ||c_s - c_b||^2,   sum_{i in G} term_i = -n_b ||c_s - c_b||^2,
// so the image contributes -P ||c_s - c_b||^2 / (B P) = -||c_s - c_b||^2 / B. As c_own moves by
// 1 / n_own per unit move of f_j,
//   d loss / d f_j = 2 (c_other - c_own) / (B n_own)
// the same for every pixel of a region. The kernels compute the loss from the per-pixel terms
// (the definition) and the gradient from this closed form.
//
// Two launches (minimenet/cuda/metric.py), both with METRIC_BLOCK threads per block:
//   metric_region_sums     grid (ceil(P / METRIC_BLOCK), C, B): per image and channel, the sum
//                          of f over each region; per image, the salient pixel count.
//   metric_terms_and_grad  grid (ceil(P / METRIC_BLOCK), B): each thread one pixel: its term,
//                          summed into the loss, and its gradient.

constexpr int METRIC_BLOCK = 256;  // a power of two: the tree reductions below halve it

// Stage 1: region sums.
//   region_sums[n, 1, c] += sum over this block's pixels i in S of f[n, c, i]
//   region_sums[n, 0, c] += sum over this block's pixels i in G of f[n, c, i]
//   salient_counts[n]    += number of this block's pixels in S   (counted by the c = 0 blocks)
// Each block reduces its METRIC_BLOCK pixels in shared memory and adds one partial sum per output
// with atomicAdd, so the outputs must be zeroed before the launch.
extern "C" __global__ void metric_region_sums(
    const float* __restrict__ f, const int* __restrict__ labels,
    float* __restrict__ region_sums, int* __restrict__ salient_counts,
    int channels, int pixels)
{
    __shared__ float salient_partial[METRIC_BLOCK];
    __shared__ float background_partial[METRIC_BLOCK];
    __shared__ int count_partial[METRIC_BLOCK];

    const int n = blockIdx.z;
    const int c = blockIdx.y;
    const int t = threadIdx.x;
    const int i = blockIdx.x * METRIC_BLOCK + t;

    float salient_value = 0.0f;
    float background_value = 0.0f;
    int is_salient = 0;
    if (i < pixels) {
        const float value = f[(n * channels + c) * pixels + i];
        is_salient = labels[n * pixels + i] == 1;
        salient_value = is_salient ? value : 0.0f;
        background_value = is_salient ? 0.0f : value;
    }
    salient_partial[t] = salient_value;
    background_partial[t] = background_value;
    count_partial[t] = is_salient;
    __syncthreads();

    // Tree reduction: after the step with stride h, slot t < h holds the sum of slots t, t + h,
    // t + 2h, ... of the original. Every thread reaches every barrier; only the adding is guarded.
    for (int stride = METRIC_BLOCK / 2; stride > 0; stride /= 2) {
        if (t < stride) {
            salient_partial[t] += salient_partial[t + stride];
            background_partial[t] += background_partial[t + stride];
            count_partial[t] += count_partial[t + stride];
        }
        __syncthreads();
    }

    if (t == 0) {
        atomicAdd(&region_sums[(n * 2 + 1) * channels + c], salient_partial[0]);
        atomicAdd(&region_sums[(n * 2 + 0) * channels + c], background_partial[0]);
        if (c == 0) atomicAdd(&salient_counts[n], count_partial[0]);
    }
}

// Stage 2: per-pixel terms and gradients, with c_own and c_other read off region_sums.
//   grad[n, c, i] = 2 (c_other[c] - c_own[c]) / (B n_own)       (0 if the image lacks a region)
//   loss         += (1 / (B P)) sum over this block's pixels of term_i
// loss (one float) must be zeroed before the launch.
extern "C" __global__ void metric_terms_and_grad(
    const float* __restrict__ f, const int* __restrict__ labels,
    const float* __restrict__ region_sums, const int* __restrict__ salient_counts,
    float* __restrict__ grad, float* __restrict__ loss,
    int batch, int channels, int pixels)
{
    __shared__ float term_partial[METRIC_BLOCK];

    const int n = blockIdx.y;
    const int t = threadIdx.x;
    const int i = blockIdx.x * METRIC_BLOCK + t;

    const int salient_count = salient_counts[n];
    const int background_count = pixels - salient_count;
    const bool has_both_regions = salient_count > 0 && background_count > 0;

    float term = 0.0f;
    if (i < pixels) {
        const bool is_salient = labels[n * pixels + i] == 1;
        const float own_count = static_cast<float>(is_salient ? salient_count : background_count);
        const float other_count = static_cast<float>(is_salient ? background_count : salient_count);
        const float* own_sums = region_sums + (n * 2 + (is_salient ? 1 : 0)) * channels;
        const float* other_sums = region_sums + (n * 2 + (is_salient ? 0 : 1)) * channels;
        const float grad_scale = has_both_regions ? 2.0f / (static_cast<float>(batch) * own_count) : 0.0f;
        for (int c = 0; c < channels; ++c) {
            const int index = (n * channels + c) * pixels + i;
            if (has_both_regions) {
                const float own_centroid = own_sums[c] / own_count;
                const float other_centroid = other_sums[c] / other_count;
                const float to_own = f[index] - own_centroid;
                const float to_other = f[index] - other_centroid;
                term += to_own * to_own - to_other * to_other;
                grad[index] = grad_scale * (other_centroid - own_centroid);
            } else {
                grad[index] = 0.0f;
            }
        }
    }
    term_partial[t] = term;
    __syncthreads();

    for (int stride = METRIC_BLOCK / 2; stride > 0; stride /= 2) {
        if (t < stride) term_partial[t] += term_partial[t + stride];
        __syncthreads();
    }

    if (t == 0)
        atomicAdd(loss, term_partial[0] / (static_cast<float>(batch) * static_cast<float>(pixels)));
}
