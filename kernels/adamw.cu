// The optimizer: AdamW with decoupled weight decay (src/optim/adamw.rs) and
// the global gradient norm for clipping (src/optim/clip.rs).
//
// AdamW, per element, in the CPU's order and in f32 (update_one):
//   g     = grad * grad_scale                 (grad_scale: the clip factor, or 1)
//   p     = p * decay_factor                  decay_factor   = 1 - lr * wd
//   m     = beta1 * m + (1 - beta1) * g
//   v     = beta2 * v + (1 - beta2) * g * g
//   denom = sqrt(v) * inv_sqrt_bias2 + eps     inv_sqrt_bias2 = 1 / sqrt(1 - beta2^t)
//   p     = p - step_size * m / denom          step_size      = lr / (1 - beta1^t)
// The constants come from the host (AdamWStep), computed in f64 from the
// CPU's formulas and cast to f32, so CPU and GPU use the same numbers.
//
// A non-finite grad_scale (grad_norm writes NaN when the norm is not finite)
// skips the update: master, m, v and the copy are left as they were, as the
// CPU refuses the step when clip_grad_norm reports a non-finite norm.
//
// The gradient norm is deterministic: grad_norm_partial_f32 runs once per
// gradient buffer with a grid fixed by the buffer's length and writes one f32
// partial sum of squares per block; grad_norm_final_f32 (one block) adds the
// partials in a fixed order in f64 and writes the norm and the clip scale.
#include "common.cuh"

// Finite tests that compile the same under nvcc and the simulator (NaN
// compares false, so it is not finite).
BERTH_DEVICE_INLINE bool adamw_finite(float x) { return fabsf(x) <= 3.402823466e+38f; }
BERTH_DEVICE_INLINE bool adamw_finite(double x) { return fabs(x) <= 1.7976931348623157e+308; }

// Reads *grad_scale, or 1 when there is none.
BERTH_DEVICE_INLINE float adamw_grad_scale(const float* grad_scale) {
    return grad_scale ? grad_scale[0] : 1.0f;
}

// master, grad, m, v (n) f32; copy (n) T or nullptr; grad_scale (1) f32 or nullptr.
// master, m, v updated in place; copy written with the updated master.
template <typename T>
BERTH_DEVICE_INLINE void adamw_update(float* master, const float* grad, float* m, float* v, T* copy,
                                      const float* grad_scale, float decay_factor, float beta1, float beta2,
                                      float one_minus_beta1, float one_minus_beta2, float step_size,
                                      float inv_sqrt_bias2, float eps, int n) {
    float scale = adamw_grad_scale(grad_scale);
    if (!adamw_finite(scale)) return;  // the step is refused (see the top of the file)
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        float g = grad[i] * scale;
        float p = master[i] * decay_factor;
        float mi = beta1 * m[i] + one_minus_beta1 * g;
        float vi = beta2 * v[i] + one_minus_beta2 * g * g;
        float denom = sqrtf(vi) * inv_sqrt_bias2 + eps;
        p -= step_size * mi / denom;
        master[i] = p;
        m[i] = mi;
        v[i] = vi;
        if (copy) store_f32(copy, i, p);
    }
}

// master, grad, m, v (n) f32; copy (n) f32 or nullptr (no working copy);
// grad_scale (1) f32 or nullptr. Updates master, m, v (and copy) in place.
extern "C" __global__ void adamw_update_f32(float* master, const float* grad, float* m, float* v, float* copy,
                                            const float* grad_scale, float decay_factor, float beta1, float beta2,
                                            float one_minus_beta1, float one_minus_beta2, float step_size,
                                            float inv_sqrt_bias2, float eps, int n) {
    adamw_update(master, grad, m, v, copy, grad_scale, decay_factor, beta1, beta2, one_minus_beta1, one_minus_beta2,
                 step_size, inv_sqrt_bias2, eps, n);
}

// master, grad, m, v (n) f32; copy (n) bf16 (the working copy, rounded to
// nearest even); grad_scale (1) f32 or nullptr. Updates master, m, v, copy.
extern "C" __global__ void adamw_update_bf16(float* master, const float* grad, float* m, float* v,
                                             __nv_bfloat16* copy, const float* grad_scale, float decay_factor,
                                             float beta1, float beta2, float one_minus_beta1, float one_minus_beta2,
                                             float step_size, float inv_sqrt_bias2, float eps, int n) {
    adamw_update(master, grad, m, v, copy, grad_scale, decay_factor, beta1, beta2, one_minus_beta1, one_minus_beta2,
                 step_size, inv_sqrt_bias2, eps, n);
}

// g (n) f32 -> partials (gridDim.x) f32: block b writes the sum of g[i]^2 over
// its grid-stride share, accumulated in f32 per thread, then across the block.
// Every partial is written (0 for a block with no elements).
extern "C" __global__ void grad_norm_partial_f32(const float* g, int n, float* partials) {
    __shared__ float scratch[32];
    float sum = 0.0f;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        float x = g[i];
        sum += x * x;
    }
    sum = block_sum(sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// v: one value per lane -> f64 sum over the 32 lanes (fixed order).
BERTH_DEVICE_INLINE double warp_sum_f64(double v) {
    for (int offset = BERTH_WARP_SIZE / 2; offset > 0; offset /= 2) {
        v += __shfl_xor_sync(BERTH_FULL_MASK, v, offset);
    }
    return v;
}

// partials (count) f32 -> norm (1) f32, scale (1) f32. One block.
//   norm  = sqrt(sum of partials), summed in f64 in a fixed order
//   scale = (max_norm > 0 && norm > max_norm) ? max_norm / (norm + 1e-6) : 1,
//           computed in f64 from the f64 norm, as clip_grad_norm does;
//           NaN when the norm is not finite (adamw_update then skips the step).
extern "C" __global__ void grad_norm_final_f32(const float* partials, int count, float max_norm, float* norm,
                                               float* scale) {
    __shared__ double scratch[32];
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += (double)partials[i];
    sum = warp_sum_f64(sum);
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    int warp = threadIdx.x / BERTH_WARP_SIZE;
    if (lane == 0) scratch[warp] = sum;
    __syncthreads();
    if (warp != 0) return;
    int warps = blockDim.x / BERTH_WARP_SIZE;
    double total = lane < warps ? scratch[lane] : 0.0;
    total = warp_sum_f64(total);
    if (lane != 0) return;
    double nrm = sqrt(total);
    double limit = (double)max_norm;
    double s = 1.0;
    if (!adamw_finite(nrm)) {
        s = nan("");
    } else if (limit > 0.0 && nrm > limit) {
        s = limit / (nrm + 1e-6);
    }
    norm[0] = (float)nrm;
    scale[0] = (float)s;
}
