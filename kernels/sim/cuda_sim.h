// The simulated device: just enough of CUDA's execution model for
// kernels/*.cu to compile as host C++20 and run on the CPU
// (DESIGN.md, "The GPU when there is no GPU").
//
// Execution model (implemented in sim_runtime.cpp):
//   - blocks run one after another;
//   - the threads of a block run as fibers on the launching OS thread,
//     switched at barriers and warp collectives;
//   - __syncthreads is a barrier over the block's threads that have not
//     returned; warp collectives are barriers over the warp's live lanes;
//   - __shared__ is `static`: blocks never overlap, so one copy per kernel
//     instantiation is exactly one block's shared memory;
//   - dynamic shared memory (BERTH_DYNAMIC_SHARED) is one buffer per launch;
//   - nvcuda::wmma (16x16x16, bf16 operands, float accumulator) is
//     warp-collective and checked (see its section at the end).
//
// Included by common.cuh when BERTH_SIM is defined. The
// CUDA qualifiers are redefined here, after the CUDA headers, so that they do
// not clash with crt/host_defines.h.
#ifndef BERTH_CUDA_SIM_H
#define BERTH_CUDA_SIM_H

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>  // before the qualifiers below are redefined; wmma fragments hold __nv_bfloat16

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

// The builtin index variables, set by the runtime before it resumes a thread.
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
// Warp-collective agreement: every lane of the calling thread's warp deposits
// `tag`. Returns 0 when all 32 lanes are running and deposited the same tag,
// 1 when the tags differ, 2 when fewer than 32 lanes are still running.
extern "C" int berth_sim_warp_collective(uint64_t tag);

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

// ---------------------------------------------------------------------------
// nvcuda::wmma (<mma.h>), the subset the kernels use: 16x16x16 tiles with
// bf16 operands (matrix_a, matrix_b; row_major or col_major) and a float
// accumulator; fill_fragment, load_matrix_sync, mma_sync, store_matrix_sync.
//
// Semantics follow the CUDA programming guide, and violations abort with a
// message instead of silently computing something:
//   - every operation is warp-collective: all 32 lanes of the warp must call
//     it, with the same pointer, ldm, layout and fragment types (checked:
//     the lanes meet at a warp barrier and compare a tag; a lane that has
//     returned is reported, a lane waiting at some other barrier deadlocks);
//   - the pointer must be 256-bit (32-byte) aligned, ldm a multiple of 8
//     elements for bf16 and of 4 for float (16 bytes in both cases).
// Representation: each lane holds the whole 16x16 tile in x[], row-major,
// so num_elements is 256 here (8 on the hardware). The element-to-position
// mapping is unspecified on the hardware, so kernels may only apply
// position-independent operations to x[] (scale every element, ...); the
// lanes' copies must stay identical, and load/store/mma check that they do
// (a lane-dependent edit of x[] is reported as a disagreement). Loads read
// memory before the warp meets, so a load racing with writes that were not
// fenced by __syncwarp() tends to be reported too. A store writes each
// element from one lane only (lane e / 8 writes element e), so a reader
// that skips __syncwarp() after a store can see stale data, as on the
// device. mma_sync computes d = a·b + c in float: each product of two bf16
// values is exact in float, and the sum runs over k in order.
// ---------------------------------------------------------------------------
namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
    static_assert(M == 16 && N == 16 && K == 16, "simulated wmma: only 16x16x16 tiles");
    static_assert(std::is_same_v<Use, accumulator>
                      ? std::is_same_v<T, float> && std::is_same_v<Layout, void>
                      : std::is_same_v<T, __nv_bfloat16> &&
                            (std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>),
                  "simulated wmma: operands are bf16 with row_major/col_major, accumulators float without layout");

   public:
    static constexpr int num_elements = 256;
    T x[256];  // the whole tile, row-major (element (r, c) at r * 16 + c)
};

namespace sim {

inline uint64_t hash(uint64_t h, uint64_t word) {
    h ^= word + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

template <typename T>
inline uint64_t hash_tile(uint64_t h, const T (&x)[256]) {
    static_assert(sizeof(x) % 8 == 0, "tile hashed as 64-bit words");
    for (size_t w = 0; w < sizeof(x) / 8; ++w) {
        uint64_t word;
        std::memcpy(&word, reinterpret_cast<const unsigned char*>(x) + 8 * w, 8);
        h = hash(h, word);
    }
    return h;
}

[[noreturn]] inline void fail(const char* op, const char* why) {
    std::fprintf(stderr,
                 "simulated device: nvcuda::wmma::%s: %s (block (%u,%u,%u), thread (%u,%u,%u))\n", op, why,
                 blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    std::fflush(stderr);
    std::abort();
}

inline void collective(const char* op, uint64_t tag) {
    int status = berth_sim_warp_collective(tag);
    if (status == 2) fail(op, "all 32 lanes of the warp must call it, but a lane has returned");
    if (status == 1) {
        fail(op,
             "the lanes of the warp disagree (pointer, ldm, layout, fragment type, or fragment contents: x[] may "
             "only be changed the same way in every lane, and shared memory must be fenced with __syncwarp())");
    }
}

template <typename T>
inline void check_pointer(const char* op, const T* p, unsigned ldm) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0) fail(op, "the pointer must be 256-bit (32-byte) aligned");
    constexpr unsigned multiple = 16 / sizeof(T);
    if (ldm % multiple != 0) {
        fail(op, sizeof(T) == 2 ? "ldm must be a multiple of 8 elements for bf16"
                                : "ldm must be a multiple of 4 elements for float");
    }
}

// Operation codes mixed into the tags, so different operations never agree.
enum : uint64_t { kFill = 1, kLoad, kStore, kMma };

template <typename Use, typename T, typename Layout>
constexpr uint64_t type_code() {
    uint64_t use = std::is_same_v<Use, matrix_a> ? 1 : std::is_same_v<Use, matrix_b> ? 2 : 3;
    uint64_t layout = std::is_same_v<Layout, row_major> ? 1 : std::is_same_v<Layout, col_major> ? 2 : 0;
    return use * 16 + layout * 4 + sizeof(T);
}

}  // namespace sim

template <typename Use, typename T, typename Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, const T& v) {
    for (int e = 0; e < 256; ++e) f.x[e] = v;
    uint64_t tag = sim::hash(sim::hash(sim::kFill, sim::type_code<Use, T, Layout>()), berth_sim_to_bits(v));
    sim::collective("fill_fragment", tag);
}

// Operand tiles: matrix_a is M x K (rows r, columns c = k), matrix_b is K x N.
// row_major: element (r, c) at p[r * ldm + c]; col_major: at p[c * ldm + r].
template <typename Use, typename Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout>& f, const __nv_bfloat16* p,
                             unsigned ldm) {
    sim::check_pointer("load_matrix_sync", p, ldm);
    constexpr bool row = std::is_same_v<Layout, row_major>;
    for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = row ? p[r * ldm + c] : p[c * ldm + r];
    }
    uint64_t tag = sim::hash(sim::kLoad, sim::type_code<Use, __nv_bfloat16, Layout>());
    tag = sim::hash(sim::hash(tag, reinterpret_cast<uintptr_t>(p)), ldm);
    sim::collective("load_matrix_sync", sim::hash_tile(tag, f.x));
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
    sim::check_pointer("load_matrix_sync", p, ldm);
    for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
    uint64_t tag = sim::hash(sim::kLoad, sim::type_code<accumulator, float, void>());
    tag = sim::hash(sim::hash(sim::hash(tag, reinterpret_cast<uintptr_t>(p)), ldm), layout);
    sim::collective("load_matrix_sync", sim::hash_tile(tag, f.x));
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm,
                              layout_t layout) {
    sim::check_pointer("store_matrix_sync", p, ldm);
    uint64_t tag = sim::hash(sim::kStore, sim::type_code<accumulator, float, void>());
    tag = sim::hash(sim::hash(sim::hash(tag, reinterpret_cast<uintptr_t>(p)), ldm), layout);
    sim::collective("store_matrix_sync", sim::hash_tile(tag, f.x));
    int lane = berth_sim_lane();
    for (int e = lane * 8; e < lane * 8 + 8; ++e) {
        int r = e / 16, c = e % 16;
        p[layout == mem_row_major ? r * ldm + c : c * ldm + r] = f.x[e];
    }
}

// d = a·b + c (d may be c).
template <typename LayoutA, typename LayoutB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LayoutA>& a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
    uint64_t tag = sim::hash(sim::kMma, sim::type_code<matrix_a, __nv_bfloat16, LayoutA>());
    tag = sim::hash(tag, sim::type_code<matrix_b, __nv_bfloat16, LayoutB>());
    tag = sim::hash_tile(sim::hash_tile(sim::hash_tile(tag, a.x), b.x), c.x);
    sim::collective("mma_sync", tag);
    float af[256], bf[256], out[256];
    for (int e = 0; e < 256; ++e) {
        af[e] = __bfloat162float(a.x[e]);
        bf[e] = __bfloat162float(b.x[e]);
    }
    for (int r = 0; r < 16; ++r) {
        for (int n = 0; n < 16; ++n) {
            float acc = c.x[r * 16 + n];
            for (int k = 0; k < 16; ++k) acc += af[r * 16 + k] * bf[k * 16 + n];
            out[r * 16 + n] = acc;
        }
    }
    std::memcpy(d.x, out, sizeof(out));
}

}  // namespace wmma
}  // namespace nvcuda

#endif  // BERTH_CUDA_SIM_H
