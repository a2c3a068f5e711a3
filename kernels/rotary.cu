// Rotary position embeddings (ModernBERT's q and k), transformers'
// rotate-half layout: within each head of size D = 2 * half, the pair
// (i, i + half) is turned by the angle position * inv_freq[i]:
//
//   y_i        = x_i * cos - x_{i+half} * sin
//   y_{i+half} = x_{i+half} * cos + x_i * sin
//
// The cosines and sines come in as tables (P, half), computed on the host
// in f64 and rounded once to f32, so the device's angles are the CPU's.
// The backward is the inverse rotation: the same kernel with sign = -1.
// One thread per pair (grid-stride over rows * heads * half).
#include "common.cuh"

// x (rows, heads * 2 * half), positions (rows), cos, sin (P, half) ->
// y (rows, heads * 2 * half); sign +1 turns forward, -1 back
template <typename T>
BERTH_DEVICE_INLINE void rotary(const T* x, const unsigned* positions, const float* cos_table, const float* sin_table, T* y,
                                int rows, int heads, int half, float sign) {
    long long pairs = (long long)rows * heads * half;
    for (long long p = grid_start(); p < pairs; p += grid_stride()) {
        long long r = p / ((long long)heads * half);
        int within = (int)(p % ((long long)heads * half));
        int h = within / half, i = within % half;
        long long at = r * heads * 2 * half + (long long)h * 2 * half + i;
        long long table = (long long)positions[r] * half + i;
        float c = cos_table[table], s = sign * sin_table[table];
        float x1 = load_f32(x, at), x2 = load_f32(x, at + half);
        store_f32(y, at, x1 * c - x2 * s);
        store_f32(y, at + half, x2 * c + x1 * s);
    }
}

// f32: x, y (rows, heads * 2 * half); positions (rows); tables (P, half)
extern "C" __global__ void rotary_f32(const float* x, const unsigned* positions, const float* cos_table,
                                      const float* sin_table, float* y, int rows, int heads, int half, float sign) {
    rotary(x, positions, cos_table, sin_table, y, rows, heads, half, sign);
}

// bf16: as rotary_f32, loads and stores bf16, computes in f32
extern "C" __global__ void rotary_bf16(const __nv_bfloat16* x, const unsigned* positions, const float* cos_table,
                                       const float* sin_table, __nv_bfloat16* y, int rows, int heads, int half,
                                       float sign) {
    rotary(x, positions, cos_table, sin_table, y, rows, heads, half, sign);
}
