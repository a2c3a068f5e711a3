// Dropout with the counter-based RNG of src/rng.rs, drawing exactly the
// CPU's masks (DESIGN.md, Decision 5; src/autograd/basic.rs, dropout_apply):
//
//   keep(i) = rng_bits24(key, i) >= threshold      threshold = round(p * 2^24)
//   y[i]    = keep(i) ? x[i] * keep_scale : 0      keep_scale = f32(1 / (1 - p))
//
// The host computes key (rng::stream_key(seed, stream)), threshold and
// keep_scale exactly as the CPU does. The backward applies the same mask to
// dy, so it is the same kernel. The residual variant is BERT's
// `dropout(x) + residual`, fused: the product and the sum are rounded
// separately (no FMA), so in f32 it matches the CPU's two ops bit for bit.
//
// Elementwise over n contiguous elements; any grid works (grid-stride over
// pairs of elements). In place (y == x, or y == residual) is allowed: each
// element is read and written by the same thread.
#include "common.cuh"

// a * b rounded on its own: nvcc must not contract it into an FMA with a
// following add (the CPU rounds the product first).
BERTH_DEVICE_INLINE float dropout_mul_rn(float a, float b) {
#ifdef BERTH_SIM
    return a * b;
#else
    return __fmul_rn(a, b);
#endif
}

// Both draws of one hash: rng_bits24(key, 2 * pair) in `even` and
// rng_bits24(key, 2 * pair + 1) in `odd` (rng::bits32: low half for the even
// offset, high half for the odd one), for one mix instead of two.
BERTH_DEVICE_INLINE void dropout_draw_pair(unsigned long long key, unsigned long long pair, unsigned int* even,
                                           unsigned int* odd) {
    unsigned long long h = rng_mix64(key ^ (pair * 0xd1b54a32d192ed03ull));
    *even = ((unsigned int)h) >> 8;
    *odd = ((unsigned int)(h >> 32)) >> 8;
}

// One element: dropped -> 0 (+ residual), kept -> x * keep_scale (+ residual).
template <bool ADD, typename T>
BERTH_DEVICE_INLINE void dropout_one(const T* x, const T* residual, T* y, long long i, bool keep, float keep_scale) {
    float v = keep ? dropout_mul_rn(load_f32(x, i), keep_scale) : 0.0f;
    if (ADD) v += load_f32(residual, i);
    store_f32(y, i, v);
}

// x (n) [, residual (n)] -> y (n), written. One thread per pair of elements
// (2j, 2j + 1); an odd n leaves the last pair with only its even element.
template <bool ADD, typename T>
BERTH_DEVICE_INLINE void dropout_pairs(const T* x, const T* residual, T* y, int n, unsigned long long key,
                                       unsigned int threshold, float keep_scale) {
    long long pairs = ((long long)n + 1) / 2;
    for (long long j = grid_start(); j < pairs; j += grid_stride()) {
        unsigned int even, odd;
        dropout_draw_pair(key, (unsigned long long)j, &even, &odd);
        long long i = 2 * j;
        dropout_one<ADD>(x, residual, y, i, even >= threshold, keep_scale);
        if (i + 1 < n) dropout_one<ADD>(x, residual, y, i + 1, odd >= threshold, keep_scale);
    }
}

// x (n) f32 -> y (n) f32: y = mask · x · keep_scale (also the backward: dy -> dx)
extern "C" __global__ void dropout_fwd_f32(const float* x, float* y, int n, unsigned long long key, unsigned int threshold, float keep_scale) {
    dropout_pairs<false>(x, (const float*)nullptr, y, n, key, threshold, keep_scale);
}

// x (n) bf16 -> y (n) bf16, computed in f32 and rounded once
extern "C" __global__ void dropout_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n, unsigned long long key, unsigned int threshold, float keep_scale) {
    dropout_pairs<false>(x, (const __nv_bfloat16*)nullptr, y, n, key, threshold, keep_scale);
}

// x (n), residual (n) f32 -> y (n) f32: y = mask · x · keep_scale + residual
extern "C" __global__ void dropout_add_fwd_f32(const float* x, const float* residual, float* y, int n, unsigned long long key, unsigned int threshold, float keep_scale) {
    dropout_pairs<true>(x, residual, y, n, key, threshold, keep_scale);
}

// x (n), residual (n) bf16 -> y (n) bf16, computed in f32 and rounded once
extern "C" __global__ void dropout_add_fwd_bf16(const __nv_bfloat16* x, const __nv_bfloat16* residual, __nv_bfloat16* y, int n, unsigned long long key, unsigned int threshold, float keep_scale) {
    dropout_pairs<true>(x, residual, y, n, key, threshold, keep_scale);
}
