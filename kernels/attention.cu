// Fused scaled-dot-product attention in the flash style: the (B, H, T, T)
// scores never reach global memory. Forward and backward side by side
// (DESIGN.md, Decisions 4, 5 and 7).
//
// Layout: q, k, v, out, dout, dq, dk, dv are (B, T, H·D) row-major, exactly
// what the Q/K/V linear layers produce; head h of token t is the D values at
// (b·T + t)·H·D + h·D. key_mask (B, T) u8, 1 = attend. lse (B, H, T) f32.
//
// Per (b, h), with s_ij = scale · q_i·k_j:
//   P_ij    = softmax_j over real keys (masked key: exactly 0). A batch row
//             whose keys are all masked is uniform 1/T over every key (HF's
//             finfo.min rule); we compute it as s_ij = 0 for every key, so
//             lse = log T and P_ij = exp(0 − lse) = 1/T.
//   Z_ij    = keep_scale when rng_bits24(stream_key, ((b·H + h)·T + i)·T + j)
//             >= threshold, else 0 (threshold 0, keep_scale 1: no dropout).
//   out_i   = Σ_j P_ij Z_ij v_j,   lse_i = log Σ_j exp(s_ij) over real keys.
// Backward (dP is the gradient of the pre-dropout probabilities):
//   dv_j    = Σ_i P_ij Z_ij dout_i
//   dP_ij   = Z_ij (dout_i·v_j)
//   delta_i = Σ_j P_ij dP_ij = dout_i·out_i   (because out_i = Σ_j P_ij Z_ij v_j)
//   dS_ij   = P_ij (dP_ij − delta_i), and 0 in an all-masked batch row
//             (its forward is constant in the scores)
//   dq_i    = scale Σ_j dS_ij k_j,   dk_j = scale Σ_i dS_ij q_i
//
// Sliding window (window >= 0, ModernBERT's local layers): key j counts
// for query i only when |i - j| <= window, and a query whose window holds no
// real key is uniform over all T keys with dS = 0 (uniform_rows marks them;
// common.cuh). Blocks then visit only the keys (queries) their rows' windows
// reach, or all of them when a uniform row needs every key.
//
// Tiling (scalar f32 FMAs; bf16 at D = 32 and 64 uses the tensor-core
// kernels of attention_tc.cu instead): a block owns ROWS = 64 rows
// (query rows in the forward and dq kernels, key rows in the dk/dv kernel)
// of one (b, h); each row is held by SPLIT adjacent lanes, each owning D/SPLIT
// of the head dimensions in registers (dot products finish with SPLIT−1 xor
// shuffles). The other side streams through shared memory in tiles of 64 rows,
// converted to f32, zero-filled past T. Keys/queries are consumed in chunks of
// CH = 8 so the dot products are independent chains. The forward keeps an
// online softmax (running max m and sum l). The backward runs dq first (it
// also writes delta), then dk/dv; each output element is written by exactly
// one thread, so both are deterministic (no atomics). Keys past the last
// real key of a batch row (trailing padding) have probability 0, so the
// forward and dq stop streaming there, and dk/dv blocks wholly past it skip
// the query loop and write zeros.
#include "common.cuh"

#define ATTN_ROWS 64  // rows a block owns
#define ATTN_TILE 64  // rows of the streamed side per shared-memory tile
#define ATTN_CH 8     // keys (or queries) per inner chunk

// The backward reads each staged chunk twice (dot products, then the gradient
// update). Without a fence between the passes ptxas keeps the whole chunk's
// shared loads alive in registers for the second pass (255 registers and
// spills from D = 16 up); a block-scope fence makes it reload them instead.
// The simulator needs nothing here.
#ifdef BERTH_SIM
#define ATTN_RELOAD_SHARED() ((void)0)
#else
#define ATTN_RELOAD_SHARED() __threadfence_block()
#endif

// One streamed row in shared memory: SPLIT slices of D/SPLIT floats, padded by
// 4 floats when SPLIT > 1 so the slices start in different banks.
template <int D, int SPLIT>
struct AttnTile {
    static constexpr int DP = D / SPLIT;
    static constexpr int PAD = SPLIT > 1 ? 4 : 0;
    static constexpr int ROW = SPLIT * (DP + PAD);
    // Element d of row r.
    static BERTH_DEVICE_INLINE int at(int r, int d) { return r * ROW + (d / DP) * (DP + PAD) + d % DP; }
    // Slice `part` of row r.
    static BERTH_DEVICE_INLINE int slice(int r, int part) { return r * ROW + part * (DP + PAD); }
};

// Sum of a partial over the SPLIT lanes sharing a row; all of them get it.
template <int SPLIT>
BERTH_DEVICE_INLINE float split_sum(float v) {
    for (int offset = SPLIT / 2; offset > 0; offset /= 2) {
        v += __shfl_xor_sync(BERTH_FULL_MASK, v, offset);
    }
    return v;
}

// Stages rows [r0, r0 + n) of x's head h (batch b) into `tile` as f32,
// zero-filled up to ATTN_TILE rows. Callers sync around it.
template <typename T, int D, int SPLIT>
BERTH_DEVICE_INLINE void attn_stage(const T* x, float* tile, int b, int T_, int H, int h, int r0, int n) {
    using Tile = AttnTile<D, SPLIT>;
    for (int e = threadIdx.x; e < ATTN_TILE * D; e += blockDim.x) {
        int r = e / D, d = e % D;
        float val = 0.0f;
        if (r < n) val = load_f32(x, ((long long)b * T_ + r0 + r) * H * D + (long long)h * D + d);
        tile[Tile::at(r, d)] = val;
    }
}

// q, k, v (B, T, H·D), key_mask (B, T) -> out (B, T, H·D), lse (B, H, T) f32.
// Grid: B·H·ceil(T/64) blocks of 64·SPLIT threads.
template <typename T, int D, int SPLIT>
BERTH_DEVICE_INLINE void attention_fwd(const T* q, const T* k, const T* v, const unsigned char* key_mask, T* out,
                                       float* lse, int B, int T_, int H, float scale, unsigned long long key,
                                       unsigned threshold, float keep_scale, int window,
                                       const unsigned char* uniform_rows) {
    using Tile = AttnTile<D, SPLIT>;
    constexpr int DP = Tile::DP;
    __shared__ __align__(16) float ks[ATTN_TILE * Tile::ROW];
    __shared__ __align__(16) float vs[ATTN_TILE * Tile::ROW];
    __shared__ float bias[ATTN_TILE];  // 0 for a key that counts, -inf otherwise
    __shared__ int flag, uniform_flag;
    (void)B;
    int tiles = (T_ + ATTN_ROWS - 1) / ATTN_ROWS;
    int bh = blockIdx.x / tiles, b = bh / H, h = bh % H;
    int row = threadIdx.x / SPLIT, part = threadIdx.x % SPLIT;
    int i = (blockIdx.x % tiles) * ATTN_ROWS + row;
    bool active = i < T_;
    long long at = ((long long)b * T_ + i) * H * D + (long long)h * D + part * DP;
    bool all_masked;
    int kend = attn_key_end(key_mask, b, T_, &flag, &all_masked);
    int first = (blockIdx.x % tiles) * ATTN_ROWS, kbegin;
    kend = attn_key_range(uniform_rows, window, kend, b, T_, first, first + ATTN_ROWS, &uniform_flag, &kbegin);
    bool uniform = attn_row_uniform(uniform_rows, window, all_masked, b, T_, i);

    float qr[DP], acc[DP];
    #pragma unroll
    for (int d = 0; d < DP; ++d) {
        qr[d] = active ? load_f32(q, at + d) : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    long long offset_row = ((long long)bh * T_ + i) * T_;
    #pragma unroll 1
    for (int j0 = kbegin; j0 < kend; j0 += ATTN_TILE) {
        int n = kend - j0 < ATTN_TILE ? kend - j0 : ATTN_TILE;
        __syncthreads();  // the previous tile is no longer read
        attn_stage<T, D, SPLIT>(k, ks, b, T_, H, h, j0, n);
        attn_stage<T, D, SPLIT>(v, vs, b, T_, H, h, j0, n);
        for (int j = threadIdx.x; j < ATTN_TILE; j += blockDim.x) {
            bool counts = j < n && (all_masked || key_mask[(long long)b * T_ + j0 + j]);
            bias[j] = counts ? 0.0f : -INFINITY;
        }
        __syncthreads();
        #pragma unroll 1
        for (int c0 = 0; c0 < n; c0 += ATTN_CH) {
            float s[ATTN_CH];
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) {
                const float* kr = ks + Tile::slice(c0 + c, part);
                float dot = 0.0f;
                #pragma unroll
                for (int d = 0; d < DP; ++d) dot += qr[d] * kr[d];
                s[c] = dot;
            }
            float cmax = -INFINITY;
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) {
                float dot = split_sum<SPLIT>(s[c]);
                int jl = c0 + c;
                s[c] = (uniform ? 0.0f : dot * scale) + attn_bias(bias[jl], uniform, jl < n, i, j0 + jl, window);
                cmax = fmaxf(cmax, s[c]);
            }
            float m_new = fmaxf(m, cmax);
            if (m_new == -INFINITY) continue;  // no key counted yet (same in all SPLIT lanes)
            float corr = expf(m - m_new);      // 0 while m is -inf
            l *= corr;
            #pragma unroll
            for (int d = 0; d < DP; ++d) acc[d] *= corr;
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) {
                float p = expf(s[c] - m_new);  // 0 for a key that does not count
                l += p;
                float pz = p * attn_dropout(key, threshold, keep_scale, offset_row + j0 + c0 + c);
                const float* vr = vs + Tile::slice(c0 + c, part);
                #pragma unroll
                for (int d = 0; d < DP; ++d) acc[d] += pz * vr[d];
            }
            m = m_new;
        }
    }
    if (active) {
        float inv = 1.0f / l;  // l >= 1: the maximum's own term
        #pragma unroll
        for (int d = 0; d < DP; ++d) store_f32(out, at + d, acc[d] * inv);
        if (part == 0) lse[(long long)bh * T_ + i] = m + logf(l);
    }
}

// q, k, v, out, dout (B, T, H·D), key_mask (B, T), lse (B, H, T)
//   -> dq (B, T, H·D) written, delta (B, H, T) f32 = rowsum(dout ∘ out).
// Grid: B·H·ceil(T/64) blocks of 64·SPLIT threads; runs before the dk/dv kernel.
template <typename T, int D, int SPLIT>
BERTH_DEVICE_INLINE void attention_bwd_dq(const T* q, const T* k, const T* v, const unsigned char* key_mask,
                                          const T* out, const float* lse, const T* dout, T* dq, float* delta,
                                          int B, int T_, int H, float scale, unsigned long long key,
                                          unsigned threshold, float keep_scale, int window,
                                          const unsigned char* uniform_rows) {
    using Tile = AttnTile<D, SPLIT>;
    constexpr int DP = Tile::DP;
    __shared__ __align__(16) float ks[ATTN_TILE * Tile::ROW];
    __shared__ __align__(16) float vs[ATTN_TILE * Tile::ROW];
    __shared__ float bias[ATTN_TILE];
    __shared__ int flag, uniform_flag;
    (void)B;
    int tiles = (T_ + ATTN_ROWS - 1) / ATTN_ROWS;
    int bh = blockIdx.x / tiles, b = bh / H, h = bh % H;
    int row = threadIdx.x / SPLIT, part = threadIdx.x % SPLIT;
    int i = (blockIdx.x % tiles) * ATTN_ROWS + row;
    bool active = i < T_;
    long long at = ((long long)b * T_ + i) * H * D + (long long)h * D + part * DP;
    bool all_masked;
    int kend = attn_key_end(key_mask, b, T_, &flag, &all_masked);
    int first = (blockIdx.x % tiles) * ATTN_ROWS, kbegin;
    kend = attn_key_range(uniform_rows, window, kend, b, T_, first, first + ATTN_ROWS, &uniform_flag, &kbegin);
    bool uniform = attn_row_uniform(uniform_rows, window, all_masked, b, T_, i);

    float qr[DP], dor[DP], dqa[DP];
    float partial = 0.0f;
    #pragma unroll
    for (int d = 0; d < DP; ++d) {
        qr[d] = active ? load_f32(q, at + d) : 0.0f;
        dor[d] = active ? load_f32(dout, at + d) : 0.0f;
        partial += dor[d] * (active ? load_f32(out, at + d) : 0.0f);
        dqa[d] = 0.0f;
    }
    float delta_i = split_sum<SPLIT>(partial);
    float lse_i = active ? lse[(long long)bh * T_ + i] : INFINITY;  // padding rows: P = 0
    if (active && part == 0) delta[(long long)bh * T_ + i] = delta_i;

    long long offset_row = ((long long)bh * T_ + i) * T_;
    #pragma unroll 1
    for (int j0 = kbegin; j0 < kend; j0 += ATTN_TILE) {
        int n = kend - j0 < ATTN_TILE ? kend - j0 : ATTN_TILE;
        __syncthreads();
        attn_stage<T, D, SPLIT>(k, ks, b, T_, H, h, j0, n);
        attn_stage<T, D, SPLIT>(v, vs, b, T_, H, h, j0, n);
        for (int j = threadIdx.x; j < ATTN_TILE; j += blockDim.x) {
            bool counts = j < n && (all_masked || key_mask[(long long)b * T_ + j0 + j]);
            bias[j] = counts ? 0.0f : -INFINITY;
        }
        __syncthreads();
        #pragma unroll 1
        for (int c0 = 0; c0 < n; c0 += ATTN_CH) {
            float s[ATTN_CH], dp[ATTN_CH];
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) s[c] = dp[c] = 0.0f;
            #pragma unroll
            for (int d = 0; d < DP; ++d) {
                #pragma unroll
                for (int c = 0; c < ATTN_CH; ++c) {
                    s[c] += qr[d] * ks[Tile::slice(c0 + c, part) + d];
                    dp[c] += dor[d] * vs[Tile::slice(c0 + c, part) + d];
                }
            }
            float ds[ATTN_CH];
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) {
                float dot = split_sum<SPLIT>(s[c]);
                int jl = c0 + c;
                float sc = (uniform ? 0.0f : dot * scale) + attn_bias(bias[jl], uniform, jl < n, i, j0 + jl, window);
                float dpv = split_sum<SPLIT>(dp[c]);
                float p = expf(sc - lse_i);
                float z = attn_dropout(key, threshold, keep_scale, offset_row + j0 + jl);
                ds[c] = uniform ? 0.0f : p * (dpv * z - delta_i);
            }
            ATTN_RELOAD_SHARED();
            #pragma unroll
            for (int d = 0; d < DP; ++d) {
                #pragma unroll
                for (int c = 0; c < ATTN_CH; ++c) dqa[d] += ds[c] * ks[Tile::slice(c0 + c, part) + d];
            }
        }
    }
    if (active) {
        #pragma unroll
        for (int d = 0; d < DP; ++d) store_f32(dq, at + d, dqa[d] * scale);
    }
}

// q, k, v, dout (B, T, H·D), key_mask (B, T), lse, delta (B, H, T) f32
//   -> dk, dv (B, T, H·D), written. Grid: B·H·ceil(T/64) blocks of 64·SPLIT
// threads, each owning 64 keys and streaming the queries.
template <typename T, int D, int SPLIT>
BERTH_DEVICE_INLINE void attention_bwd_dkdv(const T* q, const T* k, const T* v, const unsigned char* key_mask,
                                            const float* lse, const float* delta, const T* dout, T* dk, T* dv,
                                            int B, int T_, int H, float scale, unsigned long long key,
                                            unsigned threshold, float keep_scale, int window,
                                            const unsigned char* uniform_rows) {
    using Tile = AttnTile<D, SPLIT>;
    constexpr int DP = Tile::DP;
    __shared__ __align__(16) float qs[ATTN_TILE * Tile::ROW];
    __shared__ __align__(16) float dos[ATTN_TILE * Tile::ROW];
    __shared__ float lse_s[ATTN_TILE];    // +inf past T, so P = 0 there
    __shared__ float delta_s[ATTN_TILE];
    __shared__ unsigned char uniform_s[ATTN_TILE];  // the streamed queries' uniform flags
    __shared__ int flag, uniform_flag;
    (void)B;
    int tiles = (T_ + ATTN_ROWS - 1) / ATTN_ROWS;
    int bh = blockIdx.x / tiles, b = bh / H, h = bh % H;
    int row = threadIdx.x / SPLIT, part = threadIdx.x % SPLIT;
    int j = (blockIdx.x % tiles) * ATTN_ROWS + row;
    bool active = j < T_;
    long long at = ((long long)b * T_ + j) * H * D + (long long)h * D + part * DP;
    bool all_masked;
    int kend = attn_key_end(key_mask, b, T_, &flag, &all_masked);
    bool counts = active && (all_masked || key_mask[(long long)b * T_ + j]);
    float bias = counts ? 0.0f : -INFINITY;

    float kr[DP], vr[DP], dka[DP], dva[DP];
    #pragma unroll
    for (int d = 0; d < DP; ++d) {
        kr[d] = active ? load_f32(k, at + d) : 0.0f;
        vr[d] = active ? load_f32(v, at + d) : 0.0f;
        dka[d] = 0.0f;
        dva[d] = 0.0f;
    }
    long long offset_base = (long long)bh * T_ * T_ + j;  // + i·T
    int first = (blockIdx.x % tiles) * ATTN_ROWS, i_begin;
    // Keys all past kend, read by no uniform row: dk = dv = 0.
    int i_end = attn_query_range(uniform_rows, window, kend, b, T_, first, first + ATTN_ROWS, &uniform_flag, &i_begin);
    #pragma unroll 1
    for (int i0 = i_begin; i0 < i_end; i0 += ATTN_TILE) {
        int n = i_end - i0 < ATTN_TILE ? i_end - i0 : ATTN_TILE;
        __syncthreads();
        attn_stage<T, D, SPLIT>(q, qs, b, T_, H, h, i0, n);
        attn_stage<T, D, SPLIT>(dout, dos, b, T_, H, h, i0, n);
        for (int r = threadIdx.x; r < ATTN_TILE; r += blockDim.x) {
            lse_s[r] = r < n ? lse[(long long)bh * T_ + i0 + r] : INFINITY;
            delta_s[r] = r < n ? delta[(long long)bh * T_ + i0 + r] : 0.0f;
            uniform_s[r] = r < n && attn_row_uniform(uniform_rows, window, all_masked, b, T_, i0 + r);
        }
        __syncthreads();
        #pragma unroll 1
        for (int c0 = 0; c0 < n; c0 += ATTN_CH) {
            float s[ATTN_CH], dp[ATTN_CH];
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) s[c] = dp[c] = 0.0f;
            #pragma unroll
            for (int d = 0; d < DP; ++d) {
                #pragma unroll
                for (int c = 0; c < ATTN_CH; ++c) {
                    s[c] += qs[Tile::slice(c0 + c, part) + d] * kr[d];
                    dp[c] += dos[Tile::slice(c0 + c, part) + d] * vr[d];
                }
            }
            float pz[ATTN_CH], ds[ATTN_CH];
            #pragma unroll
            for (int c = 0; c < ATTN_CH; ++c) {
                int r = c0 + c;
                bool uniform = uniform_s[r] != 0;
                float dot = split_sum<SPLIT>(s[c]);
                float sc = (uniform ? 0.0f : dot * scale) + attn_bias(bias, uniform, active, i0 + r, j, window);
                float dpv = split_sum<SPLIT>(dp[c]);
                float p = expf(sc - lse_s[r]);
                float z = attn_dropout(key, threshold, keep_scale, offset_base + (long long)(i0 + r) * T_);
                pz[c] = p * z;
                ds[c] = uniform ? 0.0f : p * (dpv * z - delta_s[r]);
            }
            ATTN_RELOAD_SHARED();
            #pragma unroll
            for (int d = 0; d < DP; ++d) {
                #pragma unroll
                for (int c = 0; c < ATTN_CH; ++c) {
                    dva[d] += pz[c] * dos[Tile::slice(c0 + c, part) + d];
                    dka[d] += ds[c] * qs[Tile::slice(c0 + c, part) + d];
                }
            }
        }
    }
    if (active) {
        #pragma unroll
        for (int d = 0; d < DP; ++d) {
            store_f32(dk, at + d, dka[d] * scale);
            store_f32(dv, at + d, dva[d]);
        }
    }
}

// ---------------------------------------------------------------------------
// extern "C" entry points: attention_d<D>_<fwd|bwd_dq|bwd_dkdv>_<f32|bf16>,
// f32 at every head dim and bf16 at 8 and 16 (bf16 at 32 and 64 runs on
// tensor cores: attention_tc.cu). SPLIT (lanes per row) is 1 for D <= 32 and
// 2 for D = 64; the launcher launches 64·SPLIT threads per block. Each family
// is defined once below, with ELEM the storage type, and each kernel is one
// line of the table after it (build.rs reads both).
// ---------------------------------------------------------------------------

// Every entry ends with (window, uniform_rows): the sliding-window half-width
// (-1: none) and the (B, T) u8 uniform-query flags it needs (any buffer
// without a window: then it is not read).

// q, k, v (B, T, H·D) ELEM, key_mask (B, T) u8 -> out (B, T, H·D) ELEM, lse (B, H, T) f32
#define ATTENTION_FWD_ENTRY(name, ELEM, D, SPLIT)                                                                   \
    extern "C" __global__ void name(const ELEM* q, const ELEM* k, const ELEM* v, const unsigned char* key_mask,    \
                                    ELEM* out, float* lse, int B, int T, int H, float scale, unsigned long long key, \
                                    unsigned threshold, float keep_scale, int window,                               \
                                    const unsigned char* uniform_rows) {                                            \
        attention_fwd<ELEM, D, SPLIT>(q, k, v, key_mask, out, lse, B, T, H, scale, key, threshold, keep_scale,     \
                                      window, uniform_rows);                                                        \
    }

// q, k, v, out, dout (B, T, H·D) ELEM, key_mask (B, T) u8, lse (B, H, T) f32
// -> dq (B, T, H·D) ELEM written, delta (B, H, T) f32 = rowsum(dout ∘ out)
#define ATTENTION_BWD_DQ_ENTRY(name, ELEM, D, SPLIT)                                                                \
    extern "C" __global__ void name(const ELEM* q, const ELEM* k, const ELEM* v, const unsigned char* key_mask,    \
                                    const ELEM* out, const float* lse, const ELEM* dout, ELEM* dq, float* delta,  \
                                    int B, int T, int H, float scale, unsigned long long key, unsigned threshold, \
                                    float keep_scale, int window, const unsigned char* uniform_rows) {            \
        attention_bwd_dq<ELEM, D, SPLIT>(q, k, v, key_mask, out, lse, dout, dq, delta, B, T, H, scale, key,       \
                                         threshold, keep_scale, window, uniform_rows);                            \
    }

// q, k, v, dout (B, T, H·D) ELEM, key_mask (B, T) u8, lse, delta (B, H, T) f32
// -> dk, dv (B, T, H·D) ELEM written
#define ATTENTION_BWD_DKDV_ENTRY(name, ELEM, D, SPLIT)                                                                \
    extern "C" __global__ void name(const ELEM* q, const ELEM* k, const ELEM* v, const unsigned char* key_mask,      \
                                    const float* lse, const float* delta, const ELEM* dout, ELEM* dk, ELEM* dv,     \
                                    int B, int T, int H, float scale, unsigned long long key, unsigned threshold,   \
                                    float keep_scale, int window, const unsigned char* uniform_rows) {              \
        attention_bwd_dkdv<ELEM, D, SPLIT>(q, k, v, key_mask, lse, delta, dout, dk, dv, B, T, H, scale, key,        \
                                           threshold, keep_scale, window, uniform_rows);                            \
    }

// clang-format off
ATTENTION_FWD_ENTRY(attention_d8_fwd_f32, float, 8, 1)                      // D = 8, f32
ATTENTION_BWD_DQ_ENTRY(attention_d8_bwd_dq_f32, float, 8, 1)
ATTENTION_BWD_DKDV_ENTRY(attention_d8_bwd_dkdv_f32, float, 8, 1)
ATTENTION_FWD_ENTRY(attention_d8_fwd_bf16, __nv_bfloat16, 8, 1)             // D = 8, bf16
ATTENTION_BWD_DQ_ENTRY(attention_d8_bwd_dq_bf16, __nv_bfloat16, 8, 1)
ATTENTION_BWD_DKDV_ENTRY(attention_d8_bwd_dkdv_bf16, __nv_bfloat16, 8, 1)
ATTENTION_FWD_ENTRY(attention_d16_fwd_f32, float, 16, 1)                    // D = 16, f32
ATTENTION_BWD_DQ_ENTRY(attention_d16_bwd_dq_f32, float, 16, 1)
ATTENTION_BWD_DKDV_ENTRY(attention_d16_bwd_dkdv_f32, float, 16, 1)
ATTENTION_FWD_ENTRY(attention_d16_fwd_bf16, __nv_bfloat16, 16, 1)           // D = 16, bf16
ATTENTION_BWD_DQ_ENTRY(attention_d16_bwd_dq_bf16, __nv_bfloat16, 16, 1)
ATTENTION_BWD_DKDV_ENTRY(attention_d16_bwd_dkdv_bf16, __nv_bfloat16, 16, 1)
ATTENTION_FWD_ENTRY(attention_d32_fwd_f32, float, 32, 1)                    // D = 32, f32
ATTENTION_BWD_DQ_ENTRY(attention_d32_bwd_dq_f32, float, 32, 1)
ATTENTION_BWD_DKDV_ENTRY(attention_d32_bwd_dkdv_f32, float, 32, 1)
ATTENTION_FWD_ENTRY(attention_d64_fwd_f32, float, 64, 2)                    // D = 64, f32, two lanes per row
ATTENTION_BWD_DQ_ENTRY(attention_d64_bwd_dq_f32, float, 64, 2)
ATTENTION_BWD_DKDV_ENTRY(attention_d64_bwd_dkdv_f32, float, 64, 2)
// clang-format on
