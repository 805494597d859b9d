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
//   * __shared__ variables are function-level statics, one copy shared by every thread;
//   * atomicAdd is an OpenMP atomic capture.
//
// docs/cuda.md lists the subset of CUDA the kernels may use so that they stay emulatable.
#pragma once

#include <cmath>
#include <omp.h>

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

inline float atomicAdd(float* address, float value) {
    float old;
    _Pragma("omp atomic capture") { old = *address; *address += value; }
    return old;
}

inline int atomicAdd(int* address, int value) {
    int old;
    _Pragma("omp atomic capture") { old = *address; *address += value; }
    return old;
}

// CUDA's min and max are overloaded device functions rather than templates.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

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
