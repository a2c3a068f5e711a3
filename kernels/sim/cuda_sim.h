// The simulated device: just enough of CUDA's execution model for
// kernels/*.cu to compile as host C++20 and run on the CPU
// (DESIGN.md, "The GPU when there is no GPU").
//
// Execution model (implemented in sim_runtime.cpp):
//   - blocks run one after another;
//   - the threads of a block run as OS threads, all started once per launch;
//   - __syncthreads is a barrier over the block's threads that have not
//     returned; warp collectives are barriers over the warp's live lanes;
//   - __shared__ is `static`: blocks never overlap, so one copy per kernel
//     instantiation is exactly one block's shared memory;
//   - dynamic shared memory (BERTH_DYNAMIC_SHARED) is one buffer per launch.
//
// Included by common.cuh after cuda_bf16.h when BERTH_SIM is defined. The
// CUDA qualifiers are redefined here, after the CUDA headers, so that they do
// not clash with crt/host_defines.h.
#ifndef BERTH_CUDA_SIM_H
#define BERTH_CUDA_SIM_H

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

// The builtin index variables, set per OS thread by the runtime.
struct berth_sim_dim3 {
    unsigned int x, y, z;
};
extern thread_local berth_sim_dim3 threadIdx;
extern thread_local berth_sim_dim3 blockIdx;
extern thread_local berth_sim_dim3 blockDim;
extern thread_local berth_sim_dim3 gridDim;

// Runtime entry points (sim_runtime.cpp).
extern "C" void berth_sim_syncthreads();
// Warp exchange: every live lane of the calling thread's warp deposits
// `value`; returns what lane `src_lane` deposited. Lanes must all call it.
extern "C" uint64_t berth_sim_warp_exchange(uint64_t value, int src_lane);
extern "C" void berth_sim_syncwarp();
extern "C" void* berth_sim_dynamic_shared();

#define __syncthreads() berth_sim_syncthreads()
#define __syncwarp(...) berth_sim_syncwarp()

inline int berth_sim_lane() {
    unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return (int)(linear % 32u);
}

template <typename T>
inline uint64_t berth_sim_to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
}

template <typename T>
inline T berth_sim_from_bits(uint64_t bits) {
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    return v;
}

// Shuffles. `width` splits the warp into segments, as on the device; a
// source lane outside the segment reads the caller's own value.
template <typename T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    int lane = berth_sim_lane();
    int base = lane - lane % width;
    int from = base + ((src % width) + width) % width;
    return berth_sim_from_bits<T>(berth_sim_warp_exchange(berth_sim_to_bits(v), from));
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
    int lane = berth_sim_lane();
    int from = lane ^ lane_mask;
    if (from / width != lane / width) from = lane;
    return berth_sim_from_bits<T>(berth_sim_warp_exchange(berth_sim_to_bits(v), from));
}

template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = berth_sim_lane();
    int from = lane + (int)delta;
    if (from / width != lane / width) from = lane;
    return berth_sim_from_bits<T>(berth_sim_warp_exchange(berth_sim_to_bits(v), from));
}

template <typename T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = berth_sim_lane();
    int from = lane - (int)delta;
    if (from < 0 || from / width != lane / width) from = lane;
    return berth_sim_from_bits<T>(berth_sim_warp_exchange(berth_sim_to_bits(v), from));
}

// Votes: built from 32 exchanges so they need no extra runtime state.
inline unsigned __ballot_sync(unsigned, int predicate) {
    unsigned bits = 0;
    uint64_t mine = predicate ? 1 : 0;
    for (int lane = 0; lane < 32; ++lane) {
        bits |= (unsigned)berth_sim_warp_exchange(mine, lane) << lane;
    }
    return bits;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, !predicate) == 0; }

// Atomics through std::atomic_ref (C++20).
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}
inline int atomicMax(int* p, int v) {
    std::atomic_ref<int> a(*p);
    int old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
inline int atomicCAS(int* p, int expected, int desired) {
    std::atomic_ref<int>(*p).compare_exchange_strong(expected, desired);
    return expected;
}
inline unsigned atomicCAS(unsigned* p, unsigned expected, unsigned desired) {
    std::atomic_ref<unsigned>(*p).compare_exchange_strong(expected, desired);
    return expected;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Device math that has no standard C++ name.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}

#endif  // BERTH_CUDA_SIM_H
