// cuda_emulator.h: just enough of CUDA for the kernels in this directory to build with g++ and
// run on the CPU, unchanged, with the grid and block they are launched with on a GPU.
//
// The emulator force-includes this header (g++ -include cuda_emulator.h) in front of a .cu file;
// NVRTC never sees it. The model, chosen so that a kernel that is wrong on the GPU is wrong here:
//
//   * blocks run one after another; the threads of one block are real OpenMP threads, one per
//     CUDA thread, all running at the same time, so races and missing barriers show up;
//   * __syncthreads() is an OpenMP barrier (an orphaned one: it binds to the parallel region
//     the launcher opens for the block);
//   * __shared__ variables are function-level statics, one copy shared by every thread.
//
// docs/cuda.md lists the subset of CUDA the kernels may use so that they stay emulatable.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <omp.h>

// Kernels test this to use the C++ below in place of their inline PTX.
#define CUDA_EMULATOR 1

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The launch geometry. gridDim, blockDim and blockIdx are the same for every thread of the one
// block that runs at a time, so plain globals suffice; threadIdx is each thread's own.
static dim3 gridDim;
static dim3 blockDim;
static dim3 blockIdx;
static thread_local dim3 threadIdx;

#define __global__
#define __device__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static
// g++ understands __restrict__ natively.

inline void __syncthreads() { _Pragma("omp barrier") }

// CUDA's min and max are overloaded device functions rather than templates.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// The tensor-core operations of conv2d_tiled.cu, which on a GPU are inline PTX.

// cvt.rna.tf32.f32: keep 10 of float's 23 mantissa bits, rounding to nearest with ties away
// from zero (adding half of the dropped range to the magnitude, then truncating, does that).
inline float tf32_round(float v) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits += 0x1000u;  // inf and NaN stay as they are
    bits &= 0xffffe000u;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: d += A B over one warp, each lane holding
// its fragments in the PTX ISA's layout (written out in conv2d_tiled.cu). The lanes really do
// exchange their fragments, through per-warp scratch: a kernel that hands the instruction the
// wrong elements gets the wrong product here as on a GPU. Like the real instruction it must be
// reached by every thread of the block (here a block barrier stands in for the warp's).
inline void mma_tf32_m16n8k8(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
    static float a_fragments[32][16][8];  // [warp][row][k], one set per warp of a 1024-thread block
    static float b_fragments[32][8][8];   // [warp][k][column]
    const unsigned int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned int warp = thread / 32, g = (thread % 32) / 4, t = thread % 4;
    a_fragments[warp][g][t] = a[0];
    a_fragments[warp][g + 8][t] = a[1];
    a_fragments[warp][g][t + 4] = a[2];
    a_fragments[warp][g + 8][t + 4] = a[3];
    b_fragments[warp][t][g] = b[0];
    b_fragments[warp][t + 4][g] = b[1];
    __syncthreads();
    for (int c = 0; c < 4; ++c) {
        const unsigned int row = g + 8 * (c / 2), column = 2 * t + c % 2;
        float sum = 0.0f;
        for (int k = 0; k < 8; ++k) sum += a_fragments[warp][row][k] * b_fragments[warp][k][column];
        d[c] += sum;
    }
    __syncthreads();  // the scratch is rewritten by the next call
}

namespace cuda_emulator {

// Status codes a launch returns to Python (minimenet/cuda/emulator.py names them).
enum LaunchStatus : int { launch_ok = 0, launch_bad_block = 1, launch_too_few_threads = 2 };

constexpr unsigned int max_threads_per_block = 1024;  // the CUDA limit, enforced here too

// Runs `kernel_call` (a lambda that calls the kernel with its arguments) once per thread of
// every block of `grid`, the threads of a block concurrently.
template <class KernelCall>
int launch(dim3 grid, dim3 block, KernelCall kernel_call) {
    const unsigned int threads = block.x * block.y * block.z;
    if (threads == 0 || threads > max_threads_per_block) return launch_bad_block;
    // Without this OpenMP may hand a parallel region fewer threads than asked for, and a block
    // with missing threads would silently compute the wrong thing.
    omp_set_dynamic(0);
    gridDim = grid;
    blockDim = block;
    int status = launch_ok;
    for (unsigned int bz = 0; bz < grid.z && status == launch_ok; ++bz)
        for (unsigned int by = 0; by < grid.y && status == launch_ok; ++by)
            for (unsigned int bx = 0; bx < grid.x && status == launch_ok; ++bx) {
                blockIdx = dim3(bx, by, bz);
#pragma omp parallel num_threads(threads)
                {
                    if (static_cast<unsigned int>(omp_get_num_threads()) != threads) {
#pragma omp atomic write
                        status = launch_too_few_threads;
                    } else {
                        const unsigned int t = static_cast<unsigned int>(omp_get_thread_num());
                        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        kernel_call();
                    }
                }
            }
    return status;
}

}  // namespace cuda_emulator
