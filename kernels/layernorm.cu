// LayerNorm over the last dimension, forward and backward side by side
// (DESIGN.md, Decisions 4 and 7), and the embedding LayerNorm that gathers
// its input row from the three embedding tables.
//
//   s  = x (+ residual)                    (rounded to T, as a stored T tensor would be)
//   y  = (s − mean)·rstd·weight + bias      mean, var over the row; rstd = 1/sqrt(var + eps)
//   dx = rstd·(g − mean(g) − xhat·mean(g·xhat))      xhat = (s − mean)·rstd, g = dy·weight
//   dweight = Σ_rows dy·xhat,  dbias = Σ_rows dy
//
// The variance is two-pass (mean first, then the centred sum of squares), as
// the CPU reference and PyTorch do. All arithmetic is f32; T is the storage
// type (float or __nv_bfloat16) of s, y, dx, dy, weight and bias; mean, rstd
// and the parameter gradients are f32.
//
// Launch branches of the forward and of the backward's dx, picked by the
// launcher (src/backend/cuda/ops/layernorm.rs) from cols; each lane keeps N
// values of its row in registers:
//   layer_norm_c128_*   cols ≤ 128    one warp per row, N = 4
//   layer_norm_c512_*   cols ≤ 512    one warp per row, N = 16
//   layer_norm_c1024_*  cols ≤ 1024   one warp per row, N = 32
//   layer_norm_wide_*   cols > 1024   one block per row, rereading the row from memory
// Lane l of a warp owns columns l, l + 32, l + 64, ... (coalesced).
//
// dweight and dbias come from two more kernels, for every cols, with no float
// atomics: layer_norm_bwd_dparams_* sums fixed chunks of rows per column
// into partial (chunks, 2, cols), and layer_norm_bwd_dparams_sum_f32 adds
// the chunks up in chunk order. They are formed and summed in f64: an f32
// sum of N unit-sized terms is off by about 2^-23·sqrt(N) (1e-5 at N = 8192
// rows, measured on the H100), which the f32 parity rule would fail; f64
// accumulators in the warp-per-row kernel cost it 3-4x in registers and time
// (measured), so they live in their own column-per-lane kernel, which
// rereads s and dy.
#include "common.cuh"

// a·b rounded on its own: nvcc must not contract it into an FMA with a
// later subtraction, or g − mean(g) would not cancel exactly when cols = 1.
BERTH_DEVICE_INLINE float mul_rn(float a, float b) {
#ifdef BERTH_SIM
    return a * b;
#else
    return __fmul_rn(a, b);
#endif
}

// What a T buffer would hold after storing v.
BERTH_DEVICE_INLINE float round_as(const float*, float v) { return v; }
BERTH_DEVICE_INLINE float round_as(const __nv_bfloat16*, float v) {
    return __bfloat162float(__float2bfloat16(v));
}

// The input row of an ordinary LayerNorm: s = x (+ residual).
template <typename T>
struct ResidualInput {
    const T* x;
    const T* residual;  // null: s = x
    struct Row {
        const T* x;
        const T* r;
        BERTH_DEVICE_INLINE float operator()(int c) const {
            if (r == nullptr) return load_f32(x, c);
            return round_as(x, load_f32(x, c) + load_f32(r, c));
        }
    };
    BERTH_DEVICE_INLINE Row row(long long i, int cols) const {
        return Row{x + i * cols, residual ? residual + i * cols : nullptr};
    }
    // v[k] = s at column lane + 32k, 0 past cols. The residual test sits
    // outside the unrolled loops so that all loads of a lane issue together.
    template <int N>
    BERTH_DEVICE_INLINE void load_warp(float (&v)[N], long long i, int cols, int lane) const {
        const T* xr = x + i * cols;
        if (residual) {
            const T* rr = residual + i * cols;
#pragma unroll
            for (int k = 0; k < N; ++k) {
                int c = lane + k * BERTH_WARP_SIZE;
                v[k] = c < cols ? round_as(x, load_f32(xr, c) + load_f32(rr, c)) : 0.0f;
            }
        } else {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                int c = lane + k * BERTH_WARP_SIZE;
                v[k] = c < cols ? load_f32(xr, c) : 0.0f;
            }
        }
    }
};

// The input row of the embedding LayerNorm: word[id] + token_type[type] +
// position[n % seq_len], added in that order (HF's), rounded to T. An id
// outside its table contributes nothing (the caller validates ids; the
// kernel only never reads out of bounds). Same sum as embedding_fwd in
// kernels/embedding.cu.
template <typename T>
struct EmbeddingInput {
    const unsigned* input_ids;
    const unsigned* token_type_ids;
    const T* word;
    const T* position;
    const T* token_type;
    int vocab, positions, types, seq_len;
    struct Row {
        const T* w;  // null when out of range
        const T* t;
        const T* p;
        BERTH_DEVICE_INLINE float operator()(int c) const {
            float v = w ? load_f32(w, c) : 0.0f;
            if (t) v += load_f32(t, c);
            if (p) v += load_f32(p, c);
            return round_as(static_cast<const T*>(nullptr), v);
        }
    };
    BERTH_DEVICE_INLINE Row row(long long n, int cols) const {
        unsigned id = input_ids[n];
        unsigned type = token_type_ids[n];
        long long pos = n % seq_len;
        return Row{id < (unsigned)vocab ? word + (long long)id * cols : nullptr,
                   type < (unsigned)types ? token_type + (long long)type * cols : nullptr,
                   pos < positions ? position + pos * cols : nullptr};
    }
    // v[k] = the sum at column lane + 32k, 0 past cols; one branch-free loop
    // when all three ids are in range (always, for validated ids).
    template <int N>
    BERTH_DEVICE_INLINE void load_warp(float (&v)[N], long long n, int cols, int lane) const {
        Row r = row(n, cols);
        if (r.w && r.t && r.p) {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                int c = lane + k * BERTH_WARP_SIZE;
                v[k] = c < cols ? round_as(r.w, load_f32(r.w, c) + load_f32(r.t, c) + load_f32(r.p, c)) : 0.0f;
            }
        } else {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                int c = lane + k * BERTH_WARP_SIZE;
                v[k] = c < cols ? r(c) : 0.0f;
            }
        }
    }
};

// ---------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------

// One warp per row, N values per lane (cols ≤ 32·N). Block: any multiple of
// 32 threads; row = blockIdx.x · warps + warp.
// in: rows of (rows, cols); weight, bias (cols) -> y (rows, cols),
// sum (rows, cols) when non-null, mean, rstd (rows) f32
template <int N, typename T, typename Input>
BERTH_DEVICE_INLINE void ln_fwd_warp(const Input& in, const T* weight, const T* bias, T* y, T* sum, float* mean,
                                     float* rstd, int rows, int cols, float eps) {
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    long long row = (long long)blockIdx.x * (blockDim.x / BERTH_WARP_SIZE) + threadIdx.x / BERTH_WARP_SIZE;
    if (row >= rows) return;  // the whole warp leaves together
    float v[N];
    in.template load_warp<N>(v, row, cols, lane);
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < N; ++k) acc += v[k];
    float mu = warp_sum(acc) / (float)cols;
    acc = 0.0f;
#pragma unroll
    for (int k = 0; k < N; ++k) {
        int c = lane + k * BERTH_WARP_SIZE;
        float d = v[k] - mu;
        if (c < cols) acc += d * d;
    }
    float rs = 1.0f / sqrtf(warp_sum(acc) / (float)cols + eps);
    long long base = row * cols;
#pragma unroll
    for (int k = 0; k < N; ++k) {
        int c = lane + k * BERTH_WARP_SIZE;
        if (c < cols) {
            if (sum) store_f32(sum, base + c, v[k]);
            store_f32(y, base + c, (v[k] - mu) * rs * load_f32(weight, c) + load_f32(bias, c));
        }
    }
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// One block per row (row = blockIdx.x), any cols; the row is read three
// times (sum, centred sum of squares, output) instead of held in registers.
template <typename T, typename Input>
BERTH_DEVICE_INLINE void ln_fwd_block(const Input& in, const T* weight, const T* bias, T* y, T* sum, float* mean,
                                      float* rstd, int rows, int cols, float eps) {
    __shared__ float scratch[32];
    long long row = blockIdx.x;
    if (row >= rows) return;  // the whole block leaves together
    auto src = in.row(row, cols);
    float acc = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) acc += src(c);
    float mu = block_sum(acc, scratch) / (float)cols;
    acc = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float d = src(c) - mu;
        acc += d * d;
    }
    float rs = 1.0f / sqrtf(block_sum(acc, scratch) / (float)cols + eps);
    long long base = row * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = src(c);
        if (sum) store_f32(sum, base + c, v);
        store_f32(y, base + c, (v - mu) * rs * load_f32(weight, c) + load_f32(bias, c));
    }
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// ---------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------

// One warp per row, N values per lane (cols ≤ 32·N); row = blockIdx.x ·
// warps + warp, as in the forward.
// s, dy (rows, cols); weight (cols); mean, rstd (rows) -> dx (rows, cols), written
template <int N, typename T>
BERTH_DEVICE_INLINE void ln_bwd_warp(const T* s, const T* weight, const float* mean, const float* rstd, const T* dy,
                                     T* dx, int rows, int cols) {
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    long long row = (long long)blockIdx.x * (blockDim.x / BERTH_WARP_SIZE) + threadIdx.x / BERTH_WARP_SIZE;
    if (row >= rows) return;  // the whole warp leaves together
    long long base = row * cols;
    float mu = mean[row], rs = rstd[row];
    float xhat[N], g[N];
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll
    for (int k = 0; k < N; ++k) {
        int c = lane + k * BERTH_WARP_SIZE;
        xhat[k] = g[k] = 0.0f;
        if (c < cols) {
            xhat[k] = (load_f32(s, base + c) - mu) * rs;
            g[k] = mul_rn(load_f32(dy, base + c), load_f32(weight, c));
        }
        sum_g += g[k];
        sum_gx += g[k] * xhat[k];
    }
    float mean_g = warp_sum(sum_g) / (float)cols;
    float mean_gx = warp_sum(sum_gx) / (float)cols;
#pragma unroll
    for (int k = 0; k < N; ++k) {
        int c = lane + k * BERTH_WARP_SIZE;
        if (c < cols) store_f32(dx, base + c, rs * (g[k] - mean_g - xhat[k] * mean_gx));
    }
}

// One block per row (row = blockIdx.x), any cols; the row is read twice.
template <typename T>
BERTH_DEVICE_INLINE void ln_bwd_block(const T* s, const T* weight, const float* mean, const float* rstd, const T* dy,
                                      T* dx, int rows, int cols) {
    __shared__ float scratch[32];
    long long row = blockIdx.x;
    if (row >= rows) return;  // the whole block leaves together
    long long base = row * cols;
    float mu = mean[row], rs = rstd[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float g = mul_rn(load_f32(dy, base + c), load_f32(weight, c));
        sum_g += g;
        sum_gx += g * ((load_f32(s, base + c) - mu) * rs);
    }
    float mean_g = block_sum(sum_g, scratch) / (float)cols;
    float mean_gx = block_sum(sum_gx, scratch) / (float)cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float xhat = (load_f32(s, base + c) - mu) * rs;
        float g = mul_rn(load_f32(dy, base + c), load_f32(weight, c));
        store_f32(dx, base + c, rs * (g - mean_g - xhat * mean_gx));
    }
}

// dweight/dbias partial sums, in f64. Block (32, warps ≤ 8): blockIdx.x
// picks 32 columns (lane = column), blockIdx.y the chunk of rows
// [y·chunk, (y+1)·chunk); warp w sums rows w, w + warps, ... in order, then
// warps 0 and 1 add the warp sums in warp order.
// s, dy (rows, cols); mean, rstd (rows) -> partial (gridDim.y, 2, cols) f64
template <typename T>
BERTH_DEVICE_INLINE void ln_dparams_bwd(const T* s, const float* mean, const float* rstd, const T* dy, double* partial,
                                        int rows, int cols, int chunk) {
    __shared__ double sums[2][8][32];
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    int warp = threadIdx.x / BERTH_WARP_SIZE;
    int warps = blockDim.x / BERTH_WARP_SIZE;
    int c = blockIdx.x * BERTH_WARP_SIZE + lane;
    long long first = (long long)blockIdx.y * chunk;
    long long end = first + chunk < rows ? first + chunk : rows;
    double dw = 0.0, db = 0.0;
    if (c < cols) {
#pragma unroll 4
        for (long long row = first + warp; row < end; row += warps) {
            double d = load_f32(dy, row * cols + c);
            dw += d * (((double)load_f32(s, row * cols + c) - mean[row]) * rstd[row]);
            db += d;
        }
    }
    sums[0][warp][lane] = dw;
    sums[1][warp][lane] = db;
    __syncthreads();
    if (warp < 2 && c < cols) {
        double total = 0.0;
        for (int w = 0; w < warps; ++w) total += sums[warp][w][lane];
        partial[((long long)blockIdx.y * 2 + warp) * cols + c] = total;
    }
}

// partial (chunks, 2, cols) f64 -> dweight, dbias (cols) f32, written.
// Block (32, 8): blockIdx.x picks 32 columns, blockIdx.y dweight (0) or
// dbias (1); warp w sums chunks w, w + 8, ... in order, then warp 0 adds the
// 8 warp sums in order, in f64. Deterministic.
extern "C" __global__ void layer_norm_bwd_dparams_sum_f32(const double* partial, float* dweight, float* dbias, int chunks, int cols) {
    __shared__ double sums[8][32];
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    int warp = threadIdx.x / BERTH_WARP_SIZE;
    int warps = blockDim.x / BERTH_WARP_SIZE;  // at most 8
    int c = blockIdx.x * BERTH_WARP_SIZE + lane;
    int q = blockIdx.y;
    double acc = 0.0;
    if (c < cols) {
        for (int b = warp; b < chunks; b += warps) acc += partial[((long long)b * 2 + q) * cols + c];
    }
    sums[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && c < cols) {
        double total = 0.0;
        for (int w = 0; w < warps; ++w) total += sums[w][lane];
        (q == 0 ? dweight : dbias)[c] = (float)total;
    }
}

// ---------------------------------------------------------------------------
// extern "C" entry points. Each launch-branch family is defined once below,
// with ELEM the storage type and IMPL the device function of the branch, and
// each kernel is one line of the table after it (build.rs reads both). The
// branch in a name is the bound on cols that the launcher picks it for.
// ---------------------------------------------------------------------------

// x, residual (rows, cols) ELEM (residual may be null); weight, bias (cols) ELEM
// -> y (rows, cols) ELEM, sum (rows, cols) ELEM when non-null, mean, rstd (rows) f32
#define LAYER_NORM_FWD_ENTRY(name, ELEM, IMPL)                                                                       \
    extern "C" __global__ void name(const ELEM* x, const ELEM* residual, const ELEM* weight, const ELEM* bias,      \
                                    ELEM* y, ELEM* sum, float* mean, float* rstd, int rows, int cols, float eps) { \
        IMPL(ResidualInput<ELEM>{x, residual}, weight, bias, y, sum, mean, rstd, rows, cols, eps);                 \
    }

// s, dy (rows, cols) ELEM; weight (cols) ELEM; mean, rstd (rows) f32 -> dx (rows, cols) ELEM written
#define LAYER_NORM_BWD_ENTRY(name, ELEM, IMPL)                                                                       \
    extern "C" __global__ void name(const ELEM* s, const ELEM* weight, const float* mean, const float* rstd,        \
                                    const ELEM* dy, ELEM* dx, int rows, int cols) {                                \
        IMPL(s, weight, mean, rstd, dy, dx, rows, cols);                                                           \
    }

// The embedding LayerNorm: the row of token n is word[input_ids[n]] +
// token_type[token_type_ids[n]] + position[n % seq_len].
// input_ids, token_type_ids (rows) u32; word (vocab, cols), position
// (positions, cols), token_type (types, cols), weight, bias (cols) ELEM
// -> sum (rows, cols) ELEM (the pre-LN sum), y (rows, cols) ELEM, mean, rstd (rows) f32
#define EMBEDDING_LN_FWD_ENTRY(name, ELEM, IMPL)                                                                     \
    extern "C" __global__ void name(const unsigned* input_ids, const unsigned* token_type_ids, const ELEM* word,    \
                                    const ELEM* position, const ELEM* token_type, int vocab, int positions,         \
                                    int types, int seq_len, const ELEM* weight, const ELEM* bias, ELEM* sum,        \
                                    ELEM* y, float* mean, float* rstd, int rows, int cols, float eps) {             \
        IMPL(EmbeddingInput<ELEM>{input_ids, token_type_ids, word, position, token_type, vocab, positions, types,  \
                                  seq_len},                                                                        \
             weight, bias, y, sum, mean, rstd, rows, cols, eps);                                                   \
    }

// clang-format off
LAYER_NORM_FWD_ENTRY(layer_norm_c128_fwd_f32, float, ln_fwd_warp<4>)                      // cols ≤ 128
LAYER_NORM_FWD_ENTRY(layer_norm_c512_fwd_f32, float, ln_fwd_warp<16>)                     // cols ≤ 512
LAYER_NORM_FWD_ENTRY(layer_norm_c1024_fwd_f32, float, ln_fwd_warp<32>)                    // cols ≤ 1024
LAYER_NORM_FWD_ENTRY(layer_norm_wide_fwd_f32, float, ln_fwd_block)                        // cols > 1024
LAYER_NORM_FWD_ENTRY(layer_norm_c128_fwd_bf16, __nv_bfloat16, ln_fwd_warp<4>)
LAYER_NORM_FWD_ENTRY(layer_norm_c512_fwd_bf16, __nv_bfloat16, ln_fwd_warp<16>)
LAYER_NORM_FWD_ENTRY(layer_norm_c1024_fwd_bf16, __nv_bfloat16, ln_fwd_warp<32>)
LAYER_NORM_FWD_ENTRY(layer_norm_wide_fwd_bf16, __nv_bfloat16, ln_fwd_block)

LAYER_NORM_BWD_ENTRY(layer_norm_c128_bwd_f32, float, ln_bwd_warp<4>)                      // cols ≤ 128
LAYER_NORM_BWD_ENTRY(layer_norm_c512_bwd_f32, float, ln_bwd_warp<16>)                     // cols ≤ 512
LAYER_NORM_BWD_ENTRY(layer_norm_c1024_bwd_f32, float, ln_bwd_warp<32>)                    // cols ≤ 1024
LAYER_NORM_BWD_ENTRY(layer_norm_wide_bwd_f32, float, ln_bwd_block)                        // cols > 1024
LAYER_NORM_BWD_ENTRY(layer_norm_c128_bwd_bf16, __nv_bfloat16, ln_bwd_warp<4>)
LAYER_NORM_BWD_ENTRY(layer_norm_c512_bwd_bf16, __nv_bfloat16, ln_bwd_warp<16>)
LAYER_NORM_BWD_ENTRY(layer_norm_c1024_bwd_bf16, __nv_bfloat16, ln_bwd_warp<32>)
LAYER_NORM_BWD_ENTRY(layer_norm_wide_bwd_bf16, __nv_bfloat16, ln_bwd_block)

EMBEDDING_LN_FWD_ENTRY(embedding_ln_c128_fwd_f32, float, ln_fwd_warp<4>)                  // cols ≤ 128
EMBEDDING_LN_FWD_ENTRY(embedding_ln_c512_fwd_f32, float, ln_fwd_warp<16>)                 // cols ≤ 512
EMBEDDING_LN_FWD_ENTRY(embedding_ln_c1024_fwd_f32, float, ln_fwd_warp<32>)                // cols ≤ 1024
EMBEDDING_LN_FWD_ENTRY(embedding_ln_wide_fwd_f32, float, ln_fwd_block)                    // cols > 1024
EMBEDDING_LN_FWD_ENTRY(embedding_ln_c128_fwd_bf16, __nv_bfloat16, ln_fwd_warp<4>)
EMBEDDING_LN_FWD_ENTRY(embedding_ln_c512_fwd_bf16, __nv_bfloat16, ln_fwd_warp<16>)
EMBEDDING_LN_FWD_ENTRY(embedding_ln_c1024_fwd_bf16, __nv_bfloat16, ln_fwd_warp<32>)
EMBEDDING_LN_FWD_ENTRY(embedding_ln_wide_fwd_bf16, __nv_bfloat16, ln_fwd_block)
// clang-format on

// dweight/dbias partials, for every cols: s, dy (rows, cols) f32; mean, rstd
// (rows) f32 -> partial (chunks, 2, cols) f64, for layer_norm_bwd_dparams_sum_f32
extern "C" __global__ void layer_norm_bwd_dparams_f32(const float* s, const float* mean, const float* rstd, const float* dy, double* partial, int rows, int cols, int chunk) {
    ln_dparams_bwd(s, mean, rstd, dy, partial, rows, cols, chunk);
}
// s, dy (rows, cols) bf16; mean, rstd (rows) f32 -> partial (chunks, 2, cols) f64
extern "C" __global__ void layer_norm_bwd_dparams_bf16(const __nv_bfloat16* s, const float* mean, const float* rstd, const __nv_bfloat16* dy, double* partial, int rows, int cols, int chunk) {
    ln_dparams_bwd(s, mean, rstd, dy, partial, rows, cols, chunk);
}
