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

// Block-wide sum for blocks whose size is a multiple of 32 (at most 1024).
// Every thread of the block must call it; every thread gets the result.
// `scratch` is a __shared__ float[32] owned by the caller; the function
// syncs before returning so scratch may be reused straight away.
BERTH_DEVICE_INLINE float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    int warp = threadIdx.x / BERTH_WARP_SIZE;
    int warps = blockDim.x / BERTH_WARP_SIZE;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = lane < warps ? scratch[lane] : 0.0f;
    total = warp_sum(total);
    __syncthreads();
    return total;
}

// v: one value per lane -> max over the 32 lanes
BERTH_DEVICE_INLINE float warp_max(float v) {
    for (int offset = BERTH_WARP_SIZE / 2; offset > 0; offset /= 2) {
        v = fmaxf(v, __shfl_xor_sync(BERTH_FULL_MASK, v, offset));
    }
    return v;
}

// ---------------------------------------------------------------------------
// The counter-based RNG of src/rng.rs, bit for bit, so CPU and GPU draw the
// same dropout masks (DESIGN.md, Decision 5). The host computes the stream
// key (rng::stream_key(seed, stream)) and passes it as an unsigned long long.
// ---------------------------------------------------------------------------

// SplitMix64's finaliser (rng::mix64).
BERTH_DEVICE_INLINE unsigned long long rng_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// rng::bits32: one 64-bit hash per pair of offsets; low half for the even
// offset, high half for the odd one.
BERTH_DEVICE_INLINE unsigned int rng_bits32(unsigned long long key, unsigned long long offset) {
    unsigned long long h = rng_mix64(key ^ ((offset >> 1) * 0xd1b54a32d192ed03ull));
    return (offset & 1ull) ? (unsigned int)(h >> 32) : (unsigned int)h;
}

// rng::bits24: dropout keeps element `offset` when this is >= round(p * 2^24).
BERTH_DEVICE_INLINE unsigned int rng_bits24(unsigned long long key, unsigned long long offset) {
    return rng_bits32(key, offset) >> 8;
}

// ---------------------------------------------------------------------------
// Attention helpers shared by the scalar kernels (attention.cu) and the
// tensor-core kernels (attention_tc.cu); semantics in attention.cu's header.
// ---------------------------------------------------------------------------

// Z_ij: the dropout factor of probability element `offset`.
BERTH_DEVICE_INLINE float attn_dropout(unsigned long long key, unsigned threshold, float keep_scale, long long offset) {
    if (threshold == 0u) return keep_scale;
    return rng_bits24(key, (unsigned long long)offset) >= threshold ? keep_scale : 0.0f;
}

// The keys of batch row b that can count: [0, kend), where kend is one past
// the last real key, or T when every key is masked (the uniform row). Keys
// at or past kend are masked padding with probability 0, so loops stop
// there. Sets *all_masked; the whole block agrees. Syncs.
BERTH_DEVICE_INLINE int attn_key_end(const unsigned char* key_mask, int b, int T, int* flag, bool* all_masked) {
    if (threadIdx.x == 0) *flag = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        if (key_mask[(long long)b * T + j]) atomicMax(flag, j + 1);
    }
    __syncthreads();
    int end = *flag;
    *all_masked = end == 0;
    return end == 0 ? T : end;
}

// ---------------------------------------------------------------------------
// Sliding-window attention (ModernBERT's local layers). With window w >= 0,
// query i reads key j only when |i - j| <= w (w < 0: no window). A query
// whose window holds no real key is uniform over all T keys with a zero
// scores gradient, as the CPU softmax does (transformers adds finfo.min to
// every score of such a row). The host marks those queries in uniform_rows
// (B, T) u8; without a window the only uniform rows are those of an
// all-masked batch row, and uniform_rows is not read.
// ---------------------------------------------------------------------------

BERTH_DEVICE_INLINE bool attn_in_window(int i, int j, int window) {
    return window < 0 || (i > j ? i - j : j - i) <= window;
}

// Whether query i of batch row b is uniform (false past T).
BERTH_DEVICE_INLINE bool attn_row_uniform(const unsigned char* uniform_rows, int window, bool all_masked, int b, int T,
                                          int i) {
    if (window < 0) return all_masked;
    return i < T && uniform_rows[(long long)b * T + i] != 0;
}

// The additive mask of query i and key j: key_bias is the key's own (0 for a
// key that counts, -inf for padding or past the staged tile); a window adds
// -inf outside it, and a uniform row counts every key of the tile.
BERTH_DEVICE_INLINE float attn_bias(float key_bias, bool uniform, bool in_tile, int i, int j, int window) {
    if (window < 0) return key_bias;
    if (uniform) return in_tile ? 0.0f : -INFINITY;
    return attn_in_window(i, j, window) ? key_bias : -INFINITY;
}

// Whether any query in [i0, i1) of batch row b is uniform; the whole block
// agrees. Syncs.
BERTH_DEVICE_INLINE bool attn_any_uniform(const unsigned char* uniform_rows, int b, int T, int i0, int i1, int* flag) {
    if (threadIdx.x == 0) *flag = 0;
    __syncthreads();
    for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        if (uniform_rows[(long long)b * T + i]) atomicMax(flag, 1);
    }
    __syncthreads();
    return *flag != 0;
}

// The keys [*lo, return) that the block's query rows [i0, i1) must visit:
// [0, kend) without a window; with one, [i0 - w, i1 + w) within [0, kend),
// or every key when one of the rows is uniform. Syncs (with a window).
BERTH_DEVICE_INLINE int attn_key_range(const unsigned char* uniform_rows, int window, int kend, int b, int T, int i0,
                                       int i1, int* flag, int* lo) {
    *lo = 0;
    if (window < 0) return kend;
    if (i1 > T) i1 = T;
    if (attn_any_uniform(uniform_rows, b, T, i0, i1, flag)) return T;
    *lo = i0 - window > 0 ? i0 - window : 0;
    return i1 + window < kend ? i1 + window : kend;
}

// The queries [*lo, return) that the block's key rows [j0, j1) must visit:
// every query, or none when the keys are all past kend (they count for no
// row); with a window, [j0 - w, j1 + w) within [0, T), or every query when
// a uniform row of the batch row reads every key. Syncs (with a window).
BERTH_DEVICE_INLINE int attn_query_range(const unsigned char* uniform_rows, int window, int kend, int b, int T, int j0,
                                         int j1, int* flag, int* lo) {
    *lo = 0;
    if (window < 0) return j0 < kend ? T : 0;
    if (attn_any_uniform(uniform_rows, b, T, 0, T, flag)) return T;
    if (j0 >= kend) return 0;
    if (j1 > T) j1 = T;
    *lo = j0 - window > 0 ? j0 - window : 0;
    return j1 + window < T ? j1 + window : T;
}

#endif  // BERTH_KERNELS_COMMON_CUH

