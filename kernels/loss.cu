// Losses with their gradients in the same pass (DESIGN.md, Decisions 4 and 7):
// cross-entropy and softmax focal loss from log-softmax, BCE with logits
// (optional pos_weight) and sigmoid focal loss in the stable with-logits form,
// and mean squared error. The CPU references are src/backend/cpu/loss.rs.
//
// Every loss is deterministic: no float atomics, and every sum runs in an
// order fixed by the shapes alone. A loss is three launches or two:
//
//   cross_entropy_fwd_denom_f32            one block: Σ class weight of counted rows
//   <loss>_fwd_<T>              per-row (softmax losses, a warp per row) or
//                               per-block (elementwise losses) partial sums,
//                               and the gradient when dlogits is not null
//   loss_sum_fwd_f32            one block: Σ partials / divisor
//
// The gradient is d(loss)/d(logits) times dloss_scale (the trainer folds in
// 1/accumulation steps there); the loss itself is not scaled. "_fwd_" kernels
// write dlogits in the same pass because they share every intermediate.
//
// Softmax losses: a row whose target is IGNORE_INDEX (−100) contributes
// nothing and gets a zero gradient. When no weight is counted at all (every
// row ignored) the loss is 0 and the gradient 0, as on the CPU. A target
// outside 0..C that is not −100 (the CPU rejects it with an error) makes the
// loss NaN, so the bug shows, and gets a zero gradient row.
#include "common.cuh"

#define BERTH_IGNORE_INDEX (-100)

BERTH_DEVICE_INLINE float loss_nan() { return __int_as_float(0x7fc00000); }

// σ(x) without overflow for either sign (the CPU's two branches).
BERTH_DEVICE_INLINE float sigmoid_f32(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

// log(1 + e^-|x|), the tail of the stable softplus.
BERTH_DEVICE_INLINE float softplus_tail_f32(float x) { return log1pf(expf(-fabsf(x))); }

// ---------------------------------------------------------------------------
// Normaliser of the softmax losses.
// ---------------------------------------------------------------------------

// targets (rows) i32, weights (classes) f32 or null -> denom (1) f32
// = Σ weights[y] (1 each without weights) over rows with y in 0..classes.
// One block of any multiple of 32 threads; thread t sums rows t, t + blockDim,
// ... in order, then a fixed tree, so the result depends only on the launch shape.
extern "C" __global__ void cross_entropy_fwd_denom_f32(const int* targets, const float* weights, int rows, int classes, float* denom) {
    __shared__ float scratch[32];
    float acc = 0.0f;
    for (int i = threadIdx.x; i < rows; i += blockDim.x) {
        int y = targets[i];
        if (y >= 0 && y < classes) acc += weights ? weights[y] : 1.0f;
    }
    float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) *denom = total;
}

// ---------------------------------------------------------------------------
// Softmax losses, one warp per row.
// ---------------------------------------------------------------------------

// logits (rows, classes) T; targets (rows) i32; weights (classes) f32 or null;
// denom (1) f32 from cross_entropy_fwd_denom_f32 -> row_loss (rows) f32, unnormalised
// w·FL_i (0 for ignored rows); dlogits (rows, classes) T or null, written.
// Block: a multiple of 32 threads, warp w of block b takes row b·(blockDim/32) + w.
//
// With logp = x_y − log Σ e^x, q = 1 − p = −expm1(logp), r = logp / expm1(logp):
//   cross-entropy   loss_i = w·(−logp)           dx_c = w/denom·(softmax_c − [c = y])
//   focal           loss_i = w·q^γ·(−logp)       dx_c = w·q^γ·(1 + γ·p·r)/denom·(softmax_c − [c = y])
// (r → 1 as p → 1, so γ < 1 stays finite there). softmax_y − 1 is written as −q.
template <typename T, bool FOCAL>
BERTH_DEVICE_INLINE void softmax_loss_rows(const T* logits, const int* targets, const float* weights, const float* denom,
                                           float gamma, float dloss_scale, float* row_loss, T* dlogits, int rows,
                                           int classes) {
    const int lane = threadIdx.x % BERTH_WARP_SIZE;
    const long long row = (long long)blockIdx.x * (blockDim.x / BERTH_WARP_SIZE) + threadIdx.x / BERTH_WARP_SIZE;
    if (row >= rows) return;  // the whole warp leaves together
    const T* x = logits + row * classes;
    T* dx = dlogits ? dlogits + row * classes : nullptr;
    const int y = targets[row];
    if (y < 0 || y >= classes) {
        if (lane == 0) row_loss[row] = y == BERTH_IGNORE_INDEX ? 0.0f : loss_nan();
        if (dx) {
            for (int c = lane; c < classes; c += BERTH_WARP_SIZE) store_f32(dx, c, 0.0f);
        }
        return;
    }
    float m = -INFINITY;
    for (int c = lane; c < classes; c += BERTH_WARP_SIZE) m = fmaxf(m, load_f32(x, c));
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < classes; c += BERTH_WARP_SIZE) s += expf(load_f32(x, c) - m);
    s = warp_sum(s);
    const float log_z = m + logf(s);
    const float w = weights ? weights[y] : 1.0f;
    const float logp = load_f32(x, y) - log_z;
    const float q = -expm1f(logp);
    float loss = w * -logp;
    float coef = w;  // d loss_i / d(softmax_c − [c = y]), before the normaliser
    if (FOCAL) {
        const float qg = powf(q, gamma);
        const float r = q != 0.0f ? logp / -q : 1.0f;
        loss = w * qg * -logp;
        coef = w * qg * (1.0f + gamma * expf(logp) * r);
    }
    if (lane == 0) row_loss[row] = loss;
    if (dx) {
        const float d = *denom;
        const float k = coef * (d != 0.0f ? dloss_scale / d : dloss_scale);
        for (int c = lane; c < classes; c += BERTH_WARP_SIZE) {
            const float v = c == y ? -q : expf(load_f32(x, c) - log_z);
            store_f32(dx, c, k * v);
        }
    }
}

// logits (rows, classes) f32; targets (rows) i32; weights (classes) f32 or null; denom (1) f32
// -> row_loss (rows) f32; dlogits (rows, classes) f32 or null
extern "C" __global__ void cross_entropy_fwd_f32(const float* logits, const int* targets, const float* weights, const float* denom, float dloss_scale, float* row_loss, float* dlogits, int rows, int classes) {
    softmax_loss_rows<float, false>(logits, targets, weights, denom, 0.0f, dloss_scale, row_loss, dlogits, rows, classes);
}

// logits (rows, classes) bf16; targets (rows) i32; weights (classes) f32 or null; denom (1) f32
// -> row_loss (rows) f32; dlogits (rows, classes) bf16 or null
extern "C" __global__ void cross_entropy_fwd_bf16(const __nv_bfloat16* logits, const int* targets, const float* weights, const float* denom, float dloss_scale, float* row_loss, __nv_bfloat16* dlogits, int rows, int classes) {
    softmax_loss_rows<__nv_bfloat16, false>(logits, targets, weights, denom, 0.0f, dloss_scale, row_loss, dlogits, rows, classes);
}

// logits (rows, classes) f32; targets (rows) i32; alpha (classes) f32 or null; denom (1) f32
// -> row_loss (rows) f32; dlogits (rows, classes) f32 or null
extern "C" __global__ void focal_cross_entropy_fwd_f32(const float* logits, const int* targets, const float* alpha, const float* denom, float gamma, float dloss_scale, float* row_loss, float* dlogits, int rows, int classes) {
    softmax_loss_rows<float, true>(logits, targets, alpha, denom, gamma, dloss_scale, row_loss, dlogits, rows, classes);
}

// logits (rows, classes) bf16; targets (rows) i32; alpha (classes) f32 or null; denom (1) f32
// -> row_loss (rows) f32; dlogits (rows, classes) bf16 or null
extern "C" __global__ void focal_cross_entropy_fwd_bf16(const __nv_bfloat16* logits, const int* targets, const float* alpha, const float* denom, float gamma, float dloss_scale, float* row_loss, __nv_bfloat16* dlogits, int rows, int classes) {
    softmax_loss_rows<__nv_bfloat16, true>(logits, targets, alpha, denom, gamma, dloss_scale, row_loss, dlogits, rows, classes);
}

// ---------------------------------------------------------------------------
// Elementwise losses over n = rows·classes elements. Grid-stride over a grid
// the launcher sizes from n alone; each block writes the sum of its elements
// to partial[blockIdx.x] (thread order fixed, then a fixed tree).
// ---------------------------------------------------------------------------

// Stores the block's sum of `acc` into partial[blockIdx.x]. Every thread calls it.
BERTH_DEVICE_INLINE void store_block_partial(float acc, float* partial) {
    __shared__ float scratch[32];
    float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// logits (n) T; targets (n) f32; pos_weight (classes) f32 or null -> partial (gridDim) f32;
// dlogits (n) T or null, written. Element i is class i % classes.
//   plain:      loss = max(x, 0) − x·y + log(1 + e^-|x|)                    dx = (σ(x) − y)·s/n
//   pos_weight: loss = (1 − y)·softplus(x) + pw·y·softplus(−x)           dx = ((1 − y)·σ(x) − pw·y·σ(−x))·s/n
template <typename T>
BERTH_DEVICE_INLINE void bce_elements(const T* logits, const float* targets, const float* pos_weight, float dloss_scale,
                                      float* partial, T* dlogits, int n, int classes) {
    const float gscale = dloss_scale / (float)n;
    float acc = 0.0f;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        const float x = load_f32(logits, i);
        const float y = targets[i];
        const float tail = softplus_tail_f32(x);
        float loss, g;
        if (pos_weight) {
            const float pw = pos_weight[i % classes];
            loss = (1.0f - y) * (fmaxf(x, 0.0f) + tail) + pw * y * (fmaxf(-x, 0.0f) + tail);
            g = (1.0f - y) * sigmoid_f32(x) - pw * y * sigmoid_f32(-x);
        } else {
            loss = fmaxf(x, 0.0f) - x * y + tail;
            g = sigmoid_f32(x) - y;
        }
        acc += loss;
        if (dlogits) store_f32(dlogits, i, g * gscale);
    }
    store_block_partial(acc, partial);
}

// logits (n) f32; targets (n) f32; pos_weight (classes) f32 or null -> partial (gridDim) f32; dlogits (n) f32 or null
extern "C" __global__ void bce_with_logits_fwd_f32(const float* logits, const float* targets, const float* pos_weight, float dloss_scale, float* partial, float* dlogits, int n, int classes) {
    bce_elements(logits, targets, pos_weight, dloss_scale, partial, dlogits, n, classes);
}

// logits (n) bf16; targets (n) f32; pos_weight (classes) f32 or null -> partial (gridDim) f32; dlogits (n) bf16 or null
extern "C" __global__ void bce_with_logits_fwd_bf16(const __nv_bfloat16* logits, const float* targets, const float* pos_weight, float dloss_scale, float* partial, __nv_bfloat16* dlogits, int n, int classes) {
    bce_elements(logits, targets, pos_weight, dloss_scale, partial, dlogits, n, classes);
}

// logits (n) T; targets (n) f32; pos_weight (classes) f32 or null -> partial (gridDim) f32;
// dlogits (n) T or null, written. Element i is class i % classes.
// p = σ(x), m = 1 − p_t = p(1 − y) + σ(−x)·y, α_t = α·y + (1 − α)(1 − y) (1 when !use_alpha),
// B and dB/dx the BCE term of bce_elements (plain, or with pos_weight):
//   loss = α_t·m^γ·B        dx = α_t·m^γ·(dB/dx + γ·(p·σ(−x)/m)·(1 − 2y)·B)·s/n
// p·σ(−x)/m ≤ 2 for y in [0, 1]; at m = 0 the term is multiplied by 0 either way.
template <typename T>
BERTH_DEVICE_INLINE void sigmoid_focal_elements(const T* logits, const float* targets, const float* pos_weight, float gamma,
                                                float alpha, int use_alpha, float dloss_scale, float* partial, T* dlogits,
                                                int n, int classes) {
    const float gscale = dloss_scale / (float)n;
    float acc = 0.0f;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        const float x = load_f32(logits, i);
        const float y = targets[i];
        const float tail = softplus_tail_f32(x);
        const float p = sigmoid_f32(x);
        const float pn = sigmoid_f32(-x);
        float b, db;
        if (pos_weight) {
            const float pw = pos_weight[i % classes];
            b = (1.0f - y) * (fmaxf(x, 0.0f) + tail) + pw * y * (fmaxf(-x, 0.0f) + tail);
            db = (1.0f - y) * p - pw * y * pn;
        } else {
            b = fmaxf(x, 0.0f) - x * y + tail;
            db = p - y;
        }
        const float m = p * (1.0f - y) + pn * y;
        const float at = use_alpha ? alpha * y + (1.0f - alpha) * (1.0f - y) : 1.0f;
        const float amg = at * powf(m, gamma);
        const float ratio = m != 0.0f ? p * pn / m : 0.0f;
        acc += amg * b;
        if (dlogits) store_f32(dlogits, i, amg * (db + gamma * ratio * (1.0f - 2.0f * y) * b) * gscale);
    }
    store_block_partial(acc, partial);
}

// logits (n) f32; targets (n) f32; pos_weight (classes) f32 or null -> partial (gridDim) f32; dlogits (n) f32 or null
extern "C" __global__ void sigmoid_focal_fwd_f32(const float* logits, const float* targets, const float* pos_weight, float gamma, float alpha, int use_alpha, float dloss_scale, float* partial, float* dlogits, int n, int classes) {
    sigmoid_focal_elements(logits, targets, pos_weight, gamma, alpha, use_alpha, dloss_scale, partial, dlogits, n, classes);
}

// logits (n) bf16; targets (n) f32; pos_weight (classes) f32 or null -> partial (gridDim) f32; dlogits (n) bf16 or null
extern "C" __global__ void sigmoid_focal_fwd_bf16(const __nv_bfloat16* logits, const float* targets, const float* pos_weight, float gamma, float alpha, int use_alpha, float dloss_scale, float* partial, __nv_bfloat16* dlogits, int n, int classes) {
    sigmoid_focal_elements(logits, targets, pos_weight, gamma, alpha, use_alpha, dloss_scale, partial, dlogits, n, classes);
}

// pred (n) T; targets (n) f32 -> partial (gridDim) f32 of (p − t)^2; dpred (n) T or null = 2(p − t)·s/n
template <typename T>
BERTH_DEVICE_INLINE void mse_elements(const T* pred, const float* targets, float dloss_scale, float* partial, T* dpred, int n) {
    const float gscale = 2.0f * dloss_scale / (float)n;
    float acc = 0.0f;
    for (long long i = grid_start(); i < n; i += grid_stride()) {
        const float e = load_f32(pred, i) - targets[i];
        acc += e * e;
        if (dpred) store_f32(dpred, i, e * gscale);
    }
    store_block_partial(acc, partial);
}

// pred (n) f32; targets (n) f32 -> partial (gridDim) f32; dpred (n) f32 or null
extern "C" __global__ void mse_fwd_f32(const float* pred, const float* targets, float dloss_scale, float* partial, float* dpred, int n) {
    mse_elements(pred, targets, dloss_scale, partial, dpred, n);
}

// pred (n) bf16; targets (n) f32 -> partial (gridDim) f32; dpred (n) bf16 or null
extern "C" __global__ void mse_fwd_bf16(const __nv_bfloat16* pred, const float* targets, float dloss_scale, float* partial, __nv_bfloat16* dpred, int n) {
    mse_elements(pred, targets, dloss_scale, partial, dpred, n);
}

// ---------------------------------------------------------------------------
// The final reduction.
// ---------------------------------------------------------------------------

// parts (count) f32; denom (1) f32 or null -> loss (1) f32 = Σ parts / divisor, where the
// divisor is *denom when given, else fixed_denom; 0 when the divisor is 0 (nothing counted).
// One block of any multiple of 32 threads; fixed order as in cross_entropy_fwd_denom_f32.
extern "C" __global__ void loss_sum_fwd_f32(const float* parts, int count, const float* denom, float fixed_denom, float* loss) {
    __shared__ float scratch[32];
    float acc = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += parts[i];
    float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        const float d = denom ? *denom : fixed_denom;
        *loss = d != 0.0f ? total / d : 0.0f;
    }
}
