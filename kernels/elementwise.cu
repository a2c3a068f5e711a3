// Small elementwise and reduction kernels: add, add-assign, scale, cast,
// fill, column sums (bias gradients), the first ([CLS]) token, the mean
// over real tokens (ModernBERT's pooling), the pooler's tanh and DistilBERT's ReLU. CPU references: src/backend/cpu/activation.rs (add, scale,
// tanh), src/backend/cpu/norm.rs (sum_rows), src/autograd/basic.rs
// (first_token).
//
// Storage types are float or __nv_bfloat16; arithmetic is f32. Elementwise
// kernels take any grid (grid-stride loops) and may run in place (out == an
// input): each element is read and written by the same thread.
#include "common.cuh"

// ---------------------------------------------------------------------------
// add, add_assign, scale, cast, fill
// ---------------------------------------------------------------------------

// a (n), b (n) -> out (n) = a + b
template <typename T>
BERTH_DEVICE_INLINE void add_impl(const T* a, const T* b, T* out, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(out, i, load_f32(a, i) + load_f32(b, i));
    }
}

// acc (n) += g (n); acc and g may differ in type (f32 += bf16)
template <typename A, typename G>
BERTH_DEVICE_INLINE void add_assign_impl(A* acc, const G* g, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(acc, i, load_f32(acc, i) + load_f32(g, i));
    }
}

// x (n) -> out (n) = s * x
template <typename T>
BERTH_DEVICE_INLINE void scale_impl(const T* x, T* out, int n, float s) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(out, i, load_f32(x, i) * s);
    }
}

// src (n) S -> dst (n) D; to bf16 rounds to nearest even
template <typename S, typename D>
BERTH_DEVICE_INLINE void cast_impl(const S* src, D* dst, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(dst, i, load_f32(src, i));
    }
}

// x (n) = value (rounded to nearest even for bf16)
template <typename T>
BERTH_DEVICE_INLINE void fill_impl(T* x, int n, float value) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(x, i, value);
    }
}

// a (n), b (n) f32 -> out (n) f32
extern "C" __global__ void add_f32(const float* a, const float* b, float* out, int n) { add_impl(a, b, out, n); }

// a (n), b (n) bf16 -> out (n) bf16, summed in f32 and rounded once
extern "C" __global__ void add_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out, int n) {
    add_impl(a, b, out, n);
}

// acc (n) f32 += g (n) f32
extern "C" __global__ void add_assign_f32(float* acc, const float* g, int n) { add_assign_impl(acc, g, n); }

// acc (n) f32 += g (n) bf16
extern "C" __global__ void add_assign_widen_bf16(float* acc, const __nv_bfloat16* g, int n) { add_assign_impl(acc, g, n); }

// acc (n) bf16 += g (n) bf16, summed in f32 and rounded once
extern "C" __global__ void add_assign_bf16(__nv_bfloat16* acc, const __nv_bfloat16* g, int n) {
    add_assign_impl(acc, g, n);
}

// x (n) f32 -> out (n) f32 = s * x
extern "C" __global__ void scale_f32(const float* x, float* out, int n, float s) { scale_impl(x, out, n, s); }

// x (n) bf16 -> out (n) bf16 = s * x, computed in f32
extern "C" __global__ void scale_bf16(const __nv_bfloat16* x, __nv_bfloat16* out, int n, float s) {
    scale_impl(x, out, n, s);
}

// src (n) f32 -> dst (n) bf16, round to nearest even
extern "C" __global__ void narrow_f32(const float* src, __nv_bfloat16* dst, int n) { cast_impl(src, dst, n); }

// src (n) bf16 -> dst (n) f32, exact
extern "C" __global__ void widen_bf16(const __nv_bfloat16* src, float* dst, int n) { cast_impl(src, dst, n); }

// x (n) f32 = value
extern "C" __global__ void fill_f32(float* x, int n, float value) { fill_impl(x, n, value); }

// x (n) bf16 = bf16(value)
extern "C" __global__ void fill_bf16(__nv_bfloat16* x, int n, float value) { fill_impl(x, n, value); }

// ---------------------------------------------------------------------------
// sum_rows: out[c] = sum over r of x[r, c], in f32, deterministically.
//
// Stage 1: block (blockIdx.x, blockIdx.y) sums 32 columns over one chunk of
// rows_per_chunk rows; warp w takes rows w, w + 8, ... of the chunk (lane =
// column, so each warp reads contiguous memory), then warp 0 adds the 8
// warps' sums in warp order. Stage 2 adds the chunks' sums in chunk order.
// The order depends only on (rows, cols, rows_per_chunk); no atomics. With
// a single chunk, stage 1 writes the output directly.
// ---------------------------------------------------------------------------

#define SUM_ROWS_WARPS 8  // block = 256 threads

// x (rows, cols) T -> partial (gridDim.y, cols) f32; block 256 threads,
// grid (ceil(cols / 32), ceil(rows / rows_per_chunk))
template <typename T>
BERTH_DEVICE_INLINE void sum_rows_partial_impl(const T* x, float* partial, int rows, int cols, int rows_per_chunk) {
    __shared__ float warp_sums[SUM_ROWS_WARPS][BERTH_WARP_SIZE];
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    int warp = threadIdx.x / BERTH_WARP_SIZE;
    long long col = (long long)blockIdx.x * BERTH_WARP_SIZE + lane;
    long long first = (long long)blockIdx.y * rows_per_chunk;
    long long end = first + rows_per_chunk < rows ? first + rows_per_chunk : (long long)rows;
    float acc = 0.0f;
    if (col < cols) {
        for (long long r = first + warp; r < end; r += SUM_ROWS_WARPS) acc += load_f32(x, r * cols + col);
    }
    warp_sums[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && col < cols) {
        float total = 0.0f;
        for (int w = 0; w < SUM_ROWS_WARPS; ++w) total += warp_sums[w][lane];
        partial[(long long)blockIdx.y * cols + col] = total;
    }
}

// x (rows, cols) f32 -> partial (chunks, cols) f32
extern "C" __global__ void sum_rows_partial_f32(const float* x, float* partial, int rows, int cols, int rows_per_chunk) {
    sum_rows_partial_impl(x, partial, rows, cols, rows_per_chunk);
}

// x (rows, cols) bf16 -> partial (chunks, cols) f32
extern "C" __global__ void sum_rows_partial_bf16(const __nv_bfloat16* x, float* partial, int rows, int cols, int rows_per_chunk) {
    sum_rows_partial_impl(x, partial, rows, cols, rows_per_chunk);
}

// partial (chunks, cols) f32 -> out (cols) f32, chunks added in order
extern "C" __global__ void sum_rows_final_f32(const float* partial, float* out, int chunks, int cols) {
    for (long long c = grid_start(); c < cols; c += grid_stride()) {
        float total = 0.0f;
        for (int k = 0; k < chunks; ++k) total += partial[(long long)k * cols + c];
        out[c] = total;
    }
}

// ---------------------------------------------------------------------------
// first_token: the [CLS] row of every sequence
// ---------------------------------------------------------------------------

// x (B, T, C) -> y (B, C) = x[:, 0, :]
template <typename T>
BERTH_DEVICE_INLINE void first_token_fwd_impl(const T* x, T* y, int batch, int seq_len, int cols) {
    long long n = (long long)batch * cols;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        long long b = i / cols, c = i % cols;
        y[i] = x[b * seq_len * cols + c];
    }
}

// dy (B, C) -> dx (B, T, C): dx[:, 0, :] = dy, zeros elsewhere (written)
template <typename T>
BERTH_DEVICE_INLINE void first_token_bwd_impl(const T* dy, T* dx, int batch, int seq_len, int cols) {
    long long per_seq = (long long)seq_len * cols;
    long long n = (long long)batch * per_seq;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        long long b = i / per_seq, within = i % per_seq;
        store_f32(dx, i, within < cols ? load_f32(dy, b * cols + within) : 0.0f);
    }
}

// x (B, T, C) f32 -> y (B, C) f32
extern "C" __global__ void first_token_fwd_f32(const float* x, float* y, int batch, int seq_len, int cols) {
    first_token_fwd_impl(x, y, batch, seq_len, cols);
}

// x (B, T, C) bf16 -> y (B, C) bf16
extern "C" __global__ void first_token_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int batch, int seq_len, int cols) {
    first_token_fwd_impl(x, y, batch, seq_len, cols);
}

// dy (B, C) f32 -> dx (B, T, C) f32, written
extern "C" __global__ void first_token_bwd_f32(const float* dy, float* dx, int batch, int seq_len, int cols) {
    first_token_bwd_impl(dy, dx, batch, seq_len, cols);
}

// dy (B, C) bf16 -> dx (B, T, C) bf16, written
extern "C" __global__ void first_token_bwd_bf16(const __nv_bfloat16* dy, __nv_bfloat16* dx, int batch, int seq_len, int cols) {
    first_token_bwd_impl(dy, dx, batch, seq_len, cols);
}

// ---------------------------------------------------------------------------
// mean_pool: ModernBERT's mean over each sequence's real tokens
// ---------------------------------------------------------------------------

// x (B, T, C), weights (B, T) f32 (1/count at a real token, 0 at padding)
//   -> y (B, C) = Σ_t weights[b, t]·x[b, t, :], accumulated in f32
template <typename T>
BERTH_DEVICE_INLINE void mean_pool_fwd_impl(const T* x, const float* weights, T* y, int batch, int seq_len, int cols) {
    long long n = (long long)batch * cols;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        long long b = i / cols, c = i % cols;
        float acc = 0.0f;
        for (int t = 0; t < seq_len; ++t) {
            float w = weights[b * seq_len + t];
            if (w != 0.0f) acc += w * load_f32(x, (b * seq_len + t) * cols + c);
        }
        store_f32(y, i, acc);
    }
}

// dy (B, C), weights (B, T) f32 -> dx (B, T, C) = weights[b, t]·dy[b, :] (written)
template <typename T>
BERTH_DEVICE_INLINE void mean_pool_bwd_impl(const T* dy, const float* weights, T* dx, int batch, int seq_len, int cols) {
    long long n = (long long)batch * seq_len * cols;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        long long bt = i / cols, b = bt / seq_len;
        store_f32(dx, i, weights[bt] * load_f32(dy, b * cols + i % cols));
    }
}

// x (B, T, C) f32, weights (B, T) f32 -> y (B, C) f32
extern "C" __global__ void mean_pool_fwd_f32(const float* x, const float* weights, float* y, int batch, int seq_len, int cols) {
    mean_pool_fwd_impl(x, weights, y, batch, seq_len, cols);
}

// x (B, T, C) bf16, weights (B, T) f32 -> y (B, C) bf16
extern "C" __global__ void mean_pool_fwd_bf16(const __nv_bfloat16* x, const float* weights, __nv_bfloat16* y, int batch,
                                              int seq_len, int cols) {
    mean_pool_fwd_impl(x, weights, y, batch, seq_len, cols);
}

// dy (B, C) f32, weights (B, T) f32 -> dx (B, T, C) f32, written
extern "C" __global__ void mean_pool_bwd_f32(const float* dy, const float* weights, float* dx, int batch, int seq_len, int cols) {
    mean_pool_bwd_impl(dy, weights, dx, batch, seq_len, cols);
}

// dy (B, C) bf16, weights (B, T) f32 -> dx (B, T, C) bf16, written
extern "C" __global__ void mean_pool_bwd_bf16(const __nv_bfloat16* dy, const float* weights, __nv_bfloat16* dx, int batch,
                                              int seq_len, int cols) {
    mean_pool_bwd_impl(dy, weights, dx, batch, seq_len, cols);
}

// ---------------------------------------------------------------------------
// tanh (the pooler): y = tanh(x); dx = dy * (1 - y^2) from the saved output
// ---------------------------------------------------------------------------

// x (n) -> y (n)
template <typename T>
BERTH_DEVICE_INLINE void tanh_fwd_impl(const T* x, T* y, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(y, i, tanhf(load_f32(x, i)));
    }
}

// y (n), dy (n) -> dx (n), written
template <typename T>
BERTH_DEVICE_INLINE void tanh_bwd_impl(const T* y, const T* dy, T* dx, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        float t = load_f32(y, i);
        store_f32(dx, i, load_f32(dy, i) * (1.0f - t * t));
    }
}

// x (n) f32 -> y (n) f32
extern "C" __global__ void tanh_fwd_f32(const float* x, float* y, int n) { tanh_fwd_impl(x, y, n); }

// x (n) bf16 -> y (n) bf16, computed in f32
extern "C" __global__ void tanh_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n) { tanh_fwd_impl(x, y, n); }

// y (n), dy (n) f32 -> dx (n) f32, written
extern "C" __global__ void tanh_bwd_f32(const float* y, const float* dy, float* dx, int n) { tanh_bwd_impl(y, dy, dx, n); }

// y (n), dy (n) bf16 -> dx (n) bf16, written, computed in f32
extern "C" __global__ void tanh_bwd_bf16(const __nv_bfloat16* y, const __nv_bfloat16* dy, __nv_bfloat16* dx, int n) {
    tanh_bwd_impl(y, dy, dx, n);
}

// ---------------------------------------------------------------------------
// ReLU (DistilBERT's head): y = max(x, 0); dx = dy where y > 0, else 0, from
// the saved output (the subgradient at 0 is 0, as PyTorch's)
// ---------------------------------------------------------------------------

// x (n) -> y (n)
template <typename T>
BERTH_DEVICE_INLINE void relu_fwd_impl(const T* x, T* y, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        float v = load_f32(x, i);
        store_f32(y, i, v > 0.0f ? v : 0.0f);
    }
}

// y (n), dy (n) -> dx (n), written
template <typename T>
BERTH_DEVICE_INLINE void relu_bwd_impl(const T* y, const T* dy, T* dx, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(dx, i, load_f32(y, i) > 0.0f ? load_f32(dy, i) : 0.0f);
    }
}

// x (n) f32 -> y (n) f32
extern "C" __global__ void relu_fwd_f32(const float* x, float* y, int n) { relu_fwd_impl(x, y, n); }

// x (n) bf16 -> y (n) bf16
extern "C" __global__ void relu_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n) { relu_fwd_impl(x, y, n); }

// y (n), dy (n) f32 -> dx (n) f32, written
extern "C" __global__ void relu_bwd_f32(const float* y, const float* dy, float* dx, int n) { relu_bwd_impl(y, dy, dx, n); }

// y (n), dy (n) bf16 -> dx (n) bf16, written
extern "C" __global__ void relu_bwd_bf16(const __nv_bfloat16* y, const __nv_bfloat16* dy, __nv_bfloat16* dx, int n) {
    relu_bwd_impl(y, dy, dx, n);
}
