// Shared helpers for every kernels/*.cu file.
//
// Compiled two ways (DESIGN.md, "The GPU when there is no GPU"):
//   - by nvcc to PTX for the real device;
//   - as plain C++ for the simulated device, with BERTH_SIM defined and
//     kernels/sim/cuda_sim.h providing threadIdx, __shfl_xor_sync and friends.
// Keep everything here valid under both.
#ifndef BERTH_KERNELS_COMMON_CUH
#define BERTH_KERNELS_COMMON_CUH

#include <cuda_bf16.h>

#ifdef BERTH_SIM
#include "sim/cuda_sim.h"
#define BERTH_DEVICE_INLINE inline
#else
#define BERTH_DEVICE_INLINE __device__ __forceinline__
#endif

// Dynamic shared memory, sized by the launch: `BERTH_DYNAMIC_SHARED(float, smem);`
// declares `float* smem`. The simulator hands out one buffer per launch.
#ifdef BERTH_SIM
#define BERTH_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(berth_sim_dynamic_shared())
#else
#define BERTH_DYNAMIC_SHARED(T, name)                          \
    extern __shared__ __align__(16) unsigned char berth_smem[]; \
    T* name = reinterpret_cast<T*>(berth_smem)
#endif

#define BERTH_WARP_SIZE 32
#define BERTH_FULL_MASK 0xffffffffu

// ---------------------------------------------------------------------------
// Grid-stride loops. Indices are 64-bit so that `i += stride` cannot overflow
// an int when n is close to INT_MAX.
//
//   for (long long i = grid_start(); i < n; i += grid_stride()) { ... }
// ---------------------------------------------------------------------------

BERTH_DEVICE_INLINE long long grid_start() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

BERTH_DEVICE_INLINE long long grid_stride() {
    return (long long)gridDim.x * blockDim.x;
}

// ---------------------------------------------------------------------------
// Loads and stores that go through f32. Kernels are written once as a
// template over the storage type T (float or __nv_bfloat16) and always compute
// in f32; these overloads are the only place the storage type matters.
// bf16 stores round to nearest even (__float2bfloat16).
// ---------------------------------------------------------------------------

BERTH_DEVICE_INLINE float load_f32(const float* p, long long i) { return p[i]; }

BERTH_DEVICE_INLINE float load_f32(const __nv_bfloat16* p, long long i) {
    return __bfloat162float(p[i]);
}

BERTH_DEVICE_INLINE void store_f32(float* p, long long i, float v) { p[i] = v; }

BERTH_DEVICE_INLINE void store_f32(__nv_bfloat16* p, long long i, float v) {
    p[i] = __float2bfloat16(v);
}

// ---------------------------------------------------------------------------
// Warp reductions. Every lane of a full warp must call these; every lane gets
// the result.
// ---------------------------------------------------------------------------

// v: one value per lane -> sum over the 32 lanes
BERTH_DEVICE_INLINE float warp_sum(float v) {
    for (int offset = BERTH_WARP_SIZE / 2; offset > 0; offset /= 2) {
        v += __shfl_xor_sync(BERTH_FULL_MASK, v, offset);
    }
    return v;
}

#endif  // BERTH_KERNELS_COMMON_CUH
