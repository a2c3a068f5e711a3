// GELU, the exact erf form BERT uses (hidden_act: "gelu"), forward and
// backward side by side (DESIGN.md, Decisions 4 and 7).
//
//   y  = x * Phi(x)                      Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))
//                                               = 0.5 * erfc(-x / sqrt(2))
//   dx = dy * (Phi(x) + x * phi(x))      phi(x) = exp(-x^2 / 2) / sqrt(2 * pi)
//
// Elementwise, so the tensor's shape does not matter: x is read as n
// contiguous elements. bf16 variants load and store bf16 and compute in f32.
// Any grid works (grid-stride loops); the launcher picks one.
#include "common.cuh"

#define BERTH_INV_SQRT2 0.70710678118654752440f      // 1 / sqrt(2)
#define BERTH_INV_SQRT_2PI 0.39894228040143267794f   // 1 / sqrt(2 * pi)

// Phi through erfc: for x < 0, 1 + erf(x/sqrt2) cancels and loses most of
// float's digits (seen on the H200: 1.7e-4 relative error at x = -4.4).
BERTH_DEVICE_INLINE float normal_cdf_f32(float x) {
    return 0.5f * erfcf(-x * BERTH_INV_SQRT2);
}

BERTH_DEVICE_INLINE float gelu_f32(float x) {
    return x * normal_cdf_f32(x);
}

// d gelu(x) / dx
BERTH_DEVICE_INLINE float gelu_grad_f32(float x) {
    float cdf = normal_cdf_f32(x);
    float pdf = BERTH_INV_SQRT_2PI * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

// x (n) -> y (n)
template <typename T>
BERTH_DEVICE_INLINE void gelu_fwd(const T* x, T* y, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(y, i, gelu_f32(load_f32(x, i)));
    }
}

// x (n), dy (n) -> dx (n); dx is overwritten, not accumulated
template <typename T>
BERTH_DEVICE_INLINE void gelu_bwd(const T* x, const T* dy, T* dx, int n) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        store_f32(dx, i, load_f32(dy, i) * gelu_grad_f32(load_f32(x, i)));
    }
}

// x (n) f32 -> y (n) f32
extern "C" __global__ void gelu_fwd_f32(const float* x, float* y, int n) {
    gelu_fwd(x, y, n);
}

// x (n), dy (n) f32 -> dx (n) f32, written
extern "C" __global__ void gelu_bwd_f32(const float* x, const float* dy, float* dx, int n) {
    gelu_bwd(x, dy, dx, n);
}

// x (n) bf16 -> y (n) bf16, computed in f32
extern "C" __global__ void gelu_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n) {
    gelu_fwd(x, y, n);
}

// x (n), dy (n) bf16 -> dx (n) bf16, written, computed in f32
extern "C" __global__ void gelu_bwd_bf16(const __nv_bfloat16* x, const __nv_bfloat16* dy,
                                         __nv_bfloat16* dx, int n) {
    gelu_bwd(x, dy, dx, n);
}

// ---------- GeGLU: ModernBERT's gated feed-forward activation ----------
//
//   x (rows, 2I) = [input | gate] -> y (rows, I) = gelu(input) * gate
//   dinput = dy * gate * gelu'(input),  dgate = dy * gelu(input)
//
// One thread per output element (grid-stride); row r, column c reads
// x[r, c] and x[r, I + c].

// x (rows, 2I) -> y (rows, I); n = rows * I
template <typename T>
BERTH_DEVICE_INLINE void geglu_fwd(const T* x, T* y, int n, int inner) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        long long r = i / inner, c = i % inner;
        float input = load_f32(x, r * 2 * inner + c);
        float gate = load_f32(x, r * 2 * inner + inner + c);
        store_f32(y, i, gelu_f32(input) * gate);
    }
}

// x (rows, 2I), dy (rows, I) -> dx (rows, 2I), written; n = rows * I
template <typename T>
BERTH_DEVICE_INLINE void geglu_bwd(const T* x, const T* dy, T* dx, int n, int inner) {
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        long long r = i / inner, c = i % inner;
        long long at_input = r * 2 * inner + c, at_gate = at_input + inner;
        float input = load_f32(x, at_input), gate = load_f32(x, at_gate), d = load_f32(dy, i);
        store_f32(dx, at_input, d * gate * gelu_grad_f32(input));
        store_f32(dx, at_gate, d * gelu_f32(input));
    }
}

// x (rows, 2I) f32 -> y (rows, I) f32; n = rows * I
extern "C" __global__ void geglu_fwd_f32(const float* x, float* y, int n, int inner) {
    geglu_fwd(x, y, n, inner);
}

// x (rows, 2I), dy (rows, I) f32 -> dx (rows, 2I) f32, written
extern "C" __global__ void geglu_bwd_f32(const float* x, const float* dy, float* dx, int n, int inner) {
    geglu_bwd(x, dy, dx, n, inner);
}

// x (rows, 2I) bf16 -> y (rows, I) bf16, computed in f32
extern "C" __global__ void geglu_fwd_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int n, int inner) {
    geglu_fwd(x, y, n, inner);
}

// x (rows, 2I), dy (rows, I) bf16 -> dx (rows, 2I) bf16, written, computed in f32
extern "C" __global__ void geglu_bwd_bf16(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx, int n,
                                          int inner) {
    geglu_bwd(x, dy, dx, n, inner);
}
