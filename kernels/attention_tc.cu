// Fused attention on tensor cores (WMMA, bf16 operands, f32 accumulation)
// for bf16 storage at head dims 32 and 64 (MiniLM, bert-base). Same
// contract and semantics as the scalar kernels in attention.cu (read its
// header for the formulas): the (B, H, T, T) scores never reach global
// memory, masked keys get probability exactly 0, an all-masked batch row is
// uniform with a zero scores gradient, dropout draws rng_bits24 at offset
// ((b·H + h)·T + i)·T + j, lse (B, H, T) is saved and the backward recomputes
// the probabilities from it. A sliding window (window >= 0) masks keys
// outside |i - j| <= window and makes the rows uniform_rows marks uniform
// over every key, as in attention.cu.
//
// Tiling: a block has 4 warps and owns 64 rows of one (b, h) (query rows in
// the forward and dq kernels, key rows in the dk/dv kernel); each warp owns
// 16 of them and keeps their operand fragments (Q, or K and V) in registers
// for the whole kernel. The other side streams through shared memory as bf16
// tiles, zero-filled past T (and past the last real key) so padding
// contributes exactly 0. Per tile a warp computes its 16 x tile block of
// scores with mma_sync, stores it to its own shared-memory block, and its
// lanes (two per row) apply scale, mask, softmax and dropout there, position
// by position: the fragment layout is unspecified, so fragments only see
// uniform operations. The probabilities (and in the backward dS) are rounded
// to bf16 for the second product, as flash attention does.
//
// Forward: online softmax over key tiles of 64; the output accumulator stays
// in fragments and is rescaled (when some row's running maximum moved)
// through the warp's score block. Backward: key/query tiles of 32 (shared
// memory stays under the 48 KiB static limit); dq first (it writes delta),
// then dk/dv, each output written once (no atomics).
#include "common.cuh"

#ifndef BERTH_SIM
#include <mma.h>
#endif

namespace wmma = nvcuda::wmma;

#define TC_ROWS 64      // rows a block owns, 16 per warp
#define TC_THREADS 128  // 4 warps
#define TC_FWD_TILE 64  // keys per streamed tile in the forward
#define TC_BWD_TILE 32  // keys (dq) or queries (dk/dv) per streamed tile in the backward

using TcFragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using TcFragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using TcFragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using TcFragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// 16 bytes, for staging copies of 8 bf16 at a time.
struct __align__(16) TcChunk {
    unsigned w[4];
};

// Stages rows [r0, r0 + n) of x's head h (batch b) into `tile`, `rows` rows of
// ld = D + 8 bf16 (rows 16 bytes apart modulo 128: conflict-free fragment
// loads), zero-filled from row n. Callers sync around it.
template <int D>
BERTH_DEVICE_INLINE void tc_stage(const __nv_bfloat16* x, __nv_bfloat16* tile, int rows, int b, int T_, int H, int h,
                                  int r0, int n) {
    constexpr int CH = D / 8, LD = D + 8;
    for (int e = threadIdx.x; e < rows * CH; e += blockDim.x) {
        int r = e / CH, c = e % CH;
        TcChunk v = {{0u, 0u, 0u, 0u}};
        if (r < n) v = *reinterpret_cast<const TcChunk*>(x + ((long long)b * T_ + r0 + r) * H * D + (long long)h * D + c * 8);
        *reinterpret_cast<TcChunk*>(tile + r * LD + c * 8) = v;
    }
}

// acc (16 x 16, in 16-column block nt of a row-major 16 x n result) = A · Bᵀ
// where A is the warp's 16 x D operand fragments and B's rows nt·16.. are in
// `tile` (ld D + 8): scores q·k or dout·v.
template <int D>
BERTH_DEVICE_INLINE void tc_dot_rows(TcFragC& acc, const TcFragA* a, const __nv_bfloat16* tile, int nt) {
    wmma::fill_fragment(acc, 0.0f);
    #pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        TcFragBCol bf;
        wmma::load_matrix_sync(bf, tile + nt * 16 * (D + 8) + kk * 16, D + 8);
        wmma::mma_sync(acc, a[kk], bf, acc);
    }
}

// acc[dt] += P · X over kb 16-row blocks: P is 16 x (16·kb) bf16 row-major
// at `p` (ld ldp), X the tile's rows (ld D + 8).
template <int D>
BERTH_DEVICE_INLINE void tc_accumulate(TcFragC* acc, const __nv_bfloat16* p, int ldp, const __nv_bfloat16* tile, int kb) {
    for (int k = 0; k < kb; ++k) {
        TcFragA pf;
        wmma::load_matrix_sync(pf, p + k * 16, ldp);
        #pragma unroll
        for (int dt = 0; dt < D / 16; ++dt) {
            TcFragBRow xf;
            wmma::load_matrix_sync(xf, tile + k * 16 * (D + 8) + dt * 16, D + 8);
            wmma::mma_sync(acc[dt], pf, xf, acc[dt]);
        }
    }
}

// Writes the warp's 16 x D accumulator rows (times `mul`, per row) to x's
// head h at rows r0.. (global, bf16) through `stage` (16 x (D + 4) floats of
// the warp's own shared memory). Lane pairs own a row: lane 2r + half writes
// row r's columns [half·D/2, (half + 1)·D/2) when its row is below T.
template <int D>
BERTH_DEVICE_INLINE void tc_write_rows(const TcFragC* acc, float* stage, float mul, __nv_bfloat16* x, int b, int T_,
                                       int H, int h, int r0) {
    constexpr int LD = D + 4;
    int lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    __syncwarp();  // the warp's earlier reads of `stage` are done
    #pragma unroll
    for (int dt = 0; dt < D / 16; ++dt) wmma::store_matrix_sync(stage + dt * 16, acc[dt], LD, wmma::mem_row_major);
    __syncwarp();
    if (r0 + r < T_) {
        long long at = ((long long)b * T_ + r0 + r) * H * D + (long long)h * D;
        for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c) x[at + c] = __float2bfloat16(stage[r * LD + c] * mul);
    }
}

// q, k, v (B, T, H·D) bf16, key_mask (B, T) -> out (B, T, H·D) bf16, lse (B, H, T) f32.
// Grid: B·H·ceil(T/64) blocks of 128 threads.
template <int D>
BERTH_DEVICE_INLINE void attention_tc_fwd(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                          const unsigned char* key_mask, __nv_bfloat16* out, float* lse, int T_, int H,
                                          float scale, unsigned long long key, unsigned threshold, float keep_scale,
                                          int window, const unsigned char* uniform_rows) {
    constexpr int KT = TC_FWD_TILE, LDH = D + 8, LDP = KT + 8, LDS = KT + 4, QP = LDH > LDP ? LDH : LDP;
    // Q rows while the warps load their fragments; then each warp's P (16 x LDP).
    __shared__ __align__(32) __nv_bfloat16 qp[TC_ROWS * QP];
    __shared__ __align__(32) __nv_bfloat16 ks[KT * LDH];
    __shared__ __align__(32) __nv_bfloat16 vs[KT * LDH];
    __shared__ __align__(32) float sbuf[4 * 16 * LDS];  // each warp's scores; its output rows at the end
    __shared__ float bias[KT];                          // 0 for a key that counts, -inf otherwise
    __shared__ int flag, uniform_flag;
    int tiles = (T_ + TC_ROWS - 1) / TC_ROWS;
    int bh = blockIdx.x / tiles, b = bh / H, h = bh % H;
    int i0 = (blockIdx.x % tiles) * TC_ROWS;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int i = i0 + warp * 16 + r;  // this lane pair's query row
    bool all_masked;
    int kend = attn_key_end(key_mask, b, T_, &flag, &all_masked), kbegin;
    kend = attn_key_range(uniform_rows, window, kend, b, T_, i0, i0 + TC_ROWS, &uniform_flag, &kbegin);
    bool uniform = attn_row_uniform(uniform_rows, window, all_masked, b, T_, i);

    tc_stage<D>(q, qp, TC_ROWS, b, T_, H, h, i0, T_ - i0 < TC_ROWS ? T_ - i0 : TC_ROWS);
    __syncthreads();
    TcFragA qf[D / 16];
    TcFragC of[D / 16];
    #pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        wmma::load_matrix_sync(qf[kk], qp + warp * 16 * LDH + kk * 16, LDH);
        wmma::fill_fragment(of[kk], 0.0f);
    }
    float* sw = sbuf + warp * 16 * LDS;
    __nv_bfloat16* pw = qp + warp * 16 * LDP;
    float m = -INFINITY, l = 0.0f;  // running max and sum of row i (both lanes of the pair)
    long long offset_row = ((long long)bh * T_ + i) * T_;
    #pragma unroll 1
    for (int j0 = kbegin; j0 < kend; j0 += KT) {
        int n = kend - j0 < KT ? kend - j0 : KT, nb = (n + 15) / 16;
        __syncthreads();  // the previous tile (and, the first time, every warp's Q rows) is no longer read
        tc_stage<D>(k, ks, KT, b, T_, H, h, j0, n);
        tc_stage<D>(v, vs, KT, b, T_, H, h, j0, n);
        for (int j = threadIdx.x; j < KT; j += blockDim.x) {
            bool counts = j < n && (all_masked || key_mask[(long long)b * T_ + j0 + j]);
            bias[j] = counts ? 0.0f : -INFINITY;
        }
        __syncthreads();
        for (int nt = 0; nt < nb; ++nt) {
            TcFragC acc;
            tc_dot_rows<D>(acc, qf, ks, nt);
            wmma::store_matrix_sync(sw + nt * 16, acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();
        // Online softmax of row r over this tile's columns c = half, half + 2, ...
        float tmax = -INFINITY;
        for (int c = half; c < nb * 16; c += 2) {
            float s = (uniform ? 0.0f : sw[r * LDS + c] * scale) + attn_bias(bias[c], uniform, c < n, i, j0 + c, window);
            sw[r * LDS + c] = s;
            tmax = fmaxf(tmax, s);
        }
        float m_new = fmaxf(m, __shfl_xor_sync(BERTH_FULL_MASK, tmax, 1));
        m_new = fmaxf(m_new, tmax);
        bool none = m_new == -INFINITY;  // no key of the row counted yet
        float corr = none ? 1.0f : expf(m - m_new);
        float psum = 0.0f;
        for (int c = half; c < nb * 16; c += 2) {
            float p = none ? 0.0f : expf(sw[r * LDS + c] - m_new);
            psum += p;
            pw[r * LDP + c] = __float2bfloat16(p * attn_dropout(key, threshold, keep_scale, offset_row + j0 + c));
        }
        l = l * corr + psum + __shfl_xor_sync(BERTH_FULL_MASK, psum, 1);
        m = m_new;
        // Rescale the output rows by corr through the (now free) score block.
        if (__any_sync(BERTH_FULL_MASK, corr != 1.0f)) {
            __syncwarp();
            #pragma unroll
            for (int dt = 0; dt < D / 16; ++dt) wmma::store_matrix_sync(sw + dt * 16, of[dt], LDS, wmma::mem_row_major);
            __syncwarp();
            for (int c = half; c < D; c += 2) sw[r * LDS + c] *= corr;
            __syncwarp();
            #pragma unroll
            for (int dt = 0; dt < D / 16; ++dt) wmma::load_matrix_sync(of[dt], sw + dt * 16, LDS, wmma::mem_row_major);
        }
        __syncwarp();  // P is complete
        tc_accumulate<D>(of, pw, LDP, vs, nb);
    }
    // l >= 1 (the maximum's own term): every row sees at least one counting key.
    float inv = 1.0f / l;
    tc_write_rows<D>(of, sw, inv, out, b, T_, H, h, i0 + warp * 16);
    if (i < T_ && half == 0) lse[(long long)bh * T_ + i] = m + logf(l);
}

// q, k, v, out, dout (B, T, H·D) bf16, key_mask (B, T), lse (B, H, T)
//   -> dq (B, T, H·D) bf16 written, delta (B, H, T) f32 = rowsum(dout ∘ out).
// Grid: B·H·ceil(T/64) blocks of 128 threads; runs before the dk/dv kernel.
template <int D>
BERTH_DEVICE_INLINE void attention_tc_bwd_dq(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                             const unsigned char* key_mask, const __nv_bfloat16* out, const float* lse,
                                             const __nv_bfloat16* dout, __nv_bfloat16* dq, float* delta, int T_, int H,
                                             float scale, unsigned long long key, unsigned threshold, float keep_scale,
                                             int window, const unsigned char* uniform_rows) {
    constexpr int KT = TC_BWD_TILE, LDH = D + 8, LDP = KT + 8, LDS = KT + 4;
    static_assert(LDP <= LDH, "dS fits in the warp's Q rows");
    static_assert(2 * 16 * LDS >= 16 * (D + 4), "the output rows fit in the warp's float blocks");
    __shared__ __align__(32) __nv_bfloat16 qds[TC_ROWS * LDH];  // Q rows; then each warp's dS (16 x LDP)
    __shared__ __align__(32) __nv_bfloat16 dos[TC_ROWS * LDH];
    __shared__ __align__(32) __nv_bfloat16 ks[KT * LDH];
    __shared__ __align__(32) __nv_bfloat16 vs[KT * LDH];
    __shared__ __align__(32) float fbuf[4 * 2 * 16 * LDS];  // per warp: scores, dP (16 x LDS each)
    __shared__ float bias[KT];
    __shared__ int flag, uniform_flag;
    int tiles = (T_ + TC_ROWS - 1) / TC_ROWS;
    int bh = blockIdx.x / tiles, b = bh / H, h = bh % H;
    int i0 = (blockIdx.x % tiles) * TC_ROWS;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int i = i0 + warp * 16 + r;
    bool active = i < T_;
    bool all_masked;
    int kend = attn_key_end(key_mask, b, T_, &flag, &all_masked), kbegin;
    kend = attn_key_range(uniform_rows, window, kend, b, T_, i0, i0 + TC_ROWS, &uniform_flag, &kbegin);
    bool uniform = attn_row_uniform(uniform_rows, window, all_masked, b, T_, i);

    // delta_i = dout_i · out_i, half a row per lane.
    float partial = 0.0f;
    if (active) {
        long long at = ((long long)b * T_ + i) * H * D + (long long)h * D;
        for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c) partial += load_f32(dout, at + c) * load_f32(out, at + c);
    }
    float delta_i = partial + __shfl_xor_sync(BERTH_FULL_MASK, partial, 1);
    float lse_i = active ? lse[(long long)bh * T_ + i] : INFINITY;  // padding rows: P = 0
    if (active && half == 0) delta[(long long)bh * T_ + i] = delta_i;

    int rows = T_ - i0 < TC_ROWS ? T_ - i0 : TC_ROWS;
    tc_stage<D>(q, qds, TC_ROWS, b, T_, H, h, i0, rows);
    tc_stage<D>(dout, dos, TC_ROWS, b, T_, H, h, i0, rows);
    __syncthreads();
    TcFragA qf[D / 16], dof[D / 16];
    TcFragC dqf[D / 16];
    #pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        wmma::load_matrix_sync(qf[kk], qds + warp * 16 * LDH + kk * 16, LDH);
        wmma::load_matrix_sync(dof[kk], dos + warp * 16 * LDH + kk * 16, LDH);
        wmma::fill_fragment(dqf[kk], 0.0f);
    }
    float* sw = fbuf + warp * 2 * 16 * LDS;
    float* dpw = sw + 16 * LDS;
    __nv_bfloat16* dsw = qds + warp * 16 * LDP;
    long long offset_row = ((long long)bh * T_ + i) * T_;
    #pragma unroll 1
    for (int j0 = kbegin; j0 < kend; j0 += KT) {
        int n = kend - j0 < KT ? kend - j0 : KT, nb = (n + 15) / 16;
        __syncthreads();
        tc_stage<D>(k, ks, KT, b, T_, H, h, j0, n);
        tc_stage<D>(v, vs, KT, b, T_, H, h, j0, n);
        for (int j = threadIdx.x; j < KT; j += blockDim.x) {
            bool counts = j < n && (all_masked || key_mask[(long long)b * T_ + j0 + j]);
            bias[j] = counts ? 0.0f : -INFINITY;
        }
        __syncthreads();
        for (int nt = 0; nt < nb; ++nt) {
            TcFragC acc;
            tc_dot_rows<D>(acc, qf, ks, nt);
            wmma::store_matrix_sync(sw + nt * 16, acc, LDS, wmma::mem_row_major);
            tc_dot_rows<D>(acc, dof, vs, nt);
            wmma::store_matrix_sync(dpw + nt * 16, acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int c = half; c < nb * 16; c += 2) {
            float s = (uniform ? 0.0f : sw[r * LDS + c] * scale) + attn_bias(bias[c], uniform, c < n, i, j0 + c, window);
            float p = expf(s - lse_i);
            float z = attn_dropout(key, threshold, keep_scale, offset_row + j0 + c);
            float ds = uniform ? 0.0f : p * (dpw[r * LDS + c] * z - delta_i);
            dsw[r * LDP + c] = __float2bfloat16(ds);
        }
        __syncwarp();
        tc_accumulate<D>(dqf, dsw, LDP, ks, nb);
    }
    tc_write_rows<D>(dqf, sw, scale, dq, b, T_, H, h, i0 + warp * 16);
}

// q, k, v, dout (B, T, H·D) bf16, key_mask (B, T), lse, delta (B, H, T) f32
//   -> dk, dv (B, T, H·D) bf16, written. Grid: B·H·ceil(T/64) blocks of 128
// threads, each owning 64 keys and streaming the queries.
template <int D>
BERTH_DEVICE_INLINE void attention_tc_bwd_dkdv(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                               const unsigned char* key_mask, const float* lse, const float* delta,
                                               const __nv_bfloat16* dout, __nv_bfloat16* dk, __nv_bfloat16* dv, int T_,
                                               int H, float scale, unsigned long long key, unsigned threshold,
                                               float keep_scale, int window, const unsigned char* uniform_rows) {
    constexpr int QT = TC_BWD_TILE, LDH = D + 8, LDP = QT + 8, LDS = QT + 4;
    static_assert(LDP <= LDH, "P and dS fit in the warp's K and V rows");
    static_assert(2 * 16 * LDS >= 16 * (D + 4), "the output rows fit in the warp's float blocks");
    __shared__ __align__(32) __nv_bfloat16 kp[TC_ROWS * LDH];   // K rows; then each warp's (P∘Z)ᵀ (16 x LDP)
    __shared__ __align__(32) __nv_bfloat16 vds[TC_ROWS * LDH];  // V rows; then each warp's dSᵀ (16 x LDP)
    __shared__ __align__(32) __nv_bfloat16 qs[QT * LDH];
    __shared__ __align__(32) __nv_bfloat16 dos[QT * LDH];
    __shared__ __align__(32) float fbuf[4 * 2 * 16 * LDS];  // per warp: scoresᵀ, dPᵀ (16 x LDS each)
    __shared__ float lse_s[QT];                             // +inf past T, so P = 0 there
    __shared__ float delta_s[QT];
    __shared__ unsigned char uniform_s[QT];  // the streamed queries' uniform flags
    __shared__ int flag, uniform_flag;
    int tiles = (T_ + TC_ROWS - 1) / TC_ROWS;
    int bh = blockIdx.x / tiles, b = bh / H, h = bh % H;
    int j0 = (blockIdx.x % tiles) * TC_ROWS;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int j = j0 + warp * 16 + r;  // this lane pair's key row
    bool all_masked;
    int kend = attn_key_end(key_mask, b, T_, &flag, &all_masked);
    bool counts = j < T_ && (all_masked || key_mask[(long long)b * T_ + j]);
    float bias = counts ? 0.0f : -INFINITY;

    int rows = T_ - j0 < TC_ROWS ? T_ - j0 : TC_ROWS;
    tc_stage<D>(k, kp, TC_ROWS, b, T_, H, h, j0, rows);
    tc_stage<D>(v, vds, TC_ROWS, b, T_, H, h, j0, rows);
    __syncthreads();
    TcFragA kf[D / 16], vf[D / 16];
    TcFragC dkf[D / 16], dvf[D / 16];
    #pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        wmma::load_matrix_sync(kf[kk], kp + warp * 16 * LDH + kk * 16, LDH);
        wmma::load_matrix_sync(vf[kk], vds + warp * 16 * LDH + kk * 16, LDH);
        wmma::fill_fragment(dkf[kk], 0.0f);
        wmma::fill_fragment(dvf[kk], 0.0f);
    }
    float* sw = fbuf + warp * 2 * 16 * LDS;
    float* dpw = sw + 16 * LDS;
    __nv_bfloat16* pw = kp + warp * 16 * LDP;
    __nv_bfloat16* dsw = vds + warp * 16 * LDP;
    long long offset_base = (long long)bh * T_ * T_ + j;  // + i·T
    // Keys all past kend, read by no uniform row: dk = dv = 0.
    int i_begin, i_end = attn_query_range(uniform_rows, window, kend, b, T_, j0, j0 + TC_ROWS, &uniform_flag, &i_begin);
    #pragma unroll 1
    for (int i0 = i_begin; i0 < i_end; i0 += QT) {
        int n = i_end - i0 < QT ? i_end - i0 : QT, nb = (n + 15) / 16;
        __syncthreads();  // the previous tile (and, the first time, every warp's K and V rows) is no longer read
        tc_stage<D>(q, qs, QT, b, T_, H, h, i0, n);
        tc_stage<D>(dout, dos, QT, b, T_, H, h, i0, n);
        for (int c = threadIdx.x; c < QT; c += blockDim.x) {
            lse_s[c] = c < n ? lse[(long long)bh * T_ + i0 + c] : INFINITY;
            delta_s[c] = c < n ? delta[(long long)bh * T_ + i0 + c] : 0.0f;
            uniform_s[c] = c < n && attn_row_uniform(uniform_rows, window, all_masked, b, T_, i0 + c);
        }
        __syncthreads();
        for (int nt = 0; nt < nb; ++nt) {
            TcFragC acc;
            tc_dot_rows<D>(acc, kf, qs, nt);
            wmma::store_matrix_sync(sw + nt * 16, acc, LDS, wmma::mem_row_major);
            tc_dot_rows<D>(acc, vf, dos, nt);
            wmma::store_matrix_sync(dpw + nt * 16, acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int c = half; c < nb * 16; c += 2) {
            bool uniform = uniform_s[c] != 0;
            float s = (uniform ? 0.0f : sw[r * LDS + c] * scale) + attn_bias(bias, uniform, j < T_, i0 + c, j, window);
            float p = expf(s - lse_s[c]);
            float z = attn_dropout(key, threshold, keep_scale, offset_base + (long long)(i0 + c) * T_);
            pw[r * LDP + c] = __float2bfloat16(p * z);
            dsw[r * LDP + c] = __float2bfloat16(uniform ? 0.0f : p * (dpw[r * LDS + c] * z - delta_s[c]));
        }
        __syncwarp();
        tc_accumulate<D>(dvf, pw, LDP, dos, nb);
        tc_accumulate<D>(dkf, dsw, LDP, qs, nb);
    }
    tc_write_rows<D>(dkf, sw, scale, dk, b, T_, H, h, j0 + warp * 16);
    tc_write_rows<D>(dvf, sw, 1.0f, dv, b, T_, H, h, j0 + warp * 16);
}

// ---------------------------------------------------------------------------
// extern "C" entry points: attention_tc_d<D>_<fwd|bwd_dq|bwd_dkdv>_bf16, each
// launched as B·H·ceil(T/64) blocks of 128 threads. Arguments as the scalar
// kernels', window and uniform_rows included (B is unused: the grid carries it). Each family is defined once,
// and each kernel is one line of the table after it (build.rs reads both).
// ---------------------------------------------------------------------------

// q, k, v (B, T, H·D) bf16, key_mask (B, T) u8 -> out (B, T, H·D) bf16, lse (B, H, T) f32
#define ATTENTION_TC_FWD_ENTRY(name, D)                                                                             \
    extern "C" __global__ void name(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,        \
                                    const unsigned char* key_mask, __nv_bfloat16* out, float* lse, int B, int T,   \
                                    int H, float scale, unsigned long long key, unsigned threshold,                \
                                    float keep_scale, int window, const unsigned char* uniform_rows) {            \
        (void)B;                                                                                                  \
        attention_tc_fwd<D>(q, k, v, key_mask, out, lse, T, H, scale, key, threshold, keep_scale, window,         \
                            uniform_rows);                                                                        \
    }

// q, k, v, out, dout (B, T, H·D) bf16, key_mask (B, T) u8, lse (B, H, T) f32
// -> dq (B, T, H·D) bf16 written, delta (B, H, T) f32 = rowsum(dout ∘ out)
#define ATTENTION_TC_BWD_DQ_ENTRY(name, D)                                                                          \
    extern "C" __global__ void name(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,        \
                                    const unsigned char* key_mask, const __nv_bfloat16* out, const float* lse,     \
                                    const __nv_bfloat16* dout, __nv_bfloat16* dq, float* delta, int B, int T,      \
                                    int H, float scale, unsigned long long key, unsigned threshold,                \
                                    float keep_scale, int window, const unsigned char* uniform_rows) {            \
        (void)B;                                                                                                  \
        attention_tc_bwd_dq<D>(q, k, v, key_mask, out, lse, dout, dq, delta, T, H, scale, key, threshold,         \
                               keep_scale, window, uniform_rows);                                                 \
    }

// q, k, v, dout (B, T, H·D) bf16, key_mask (B, T) u8, lse, delta (B, H, T) f32
// -> dk, dv (B, T, H·D) bf16 written
#define ATTENTION_TC_BWD_DKDV_ENTRY(name, D)                                                                        \
    extern "C" __global__ void name(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,        \
                                    const unsigned char* key_mask, const float* lse, const float* delta,           \
                                    const __nv_bfloat16* dout, __nv_bfloat16* dk, __nv_bfloat16* dv, int B, int T, \
                                    int H, float scale, unsigned long long key, unsigned threshold,                \
                                    float keep_scale, int window, const unsigned char* uniform_rows) {            \
        (void)B;                                                                                                  \
        attention_tc_bwd_dkdv<D>(q, k, v, key_mask, lse, delta, dout, dk, dv, T, H, scale, key, threshold,        \
                                 keep_scale, window, uniform_rows);                                               \
    }

// clang-format off
ATTENTION_TC_FWD_ENTRY(attention_tc_d32_fwd_bf16, 32)          // D = 32
ATTENTION_TC_BWD_DQ_ENTRY(attention_tc_d32_bwd_dq_bf16, 32)
ATTENTION_TC_BWD_DKDV_ENTRY(attention_tc_d32_bwd_dkdv_bf16, 32)
ATTENTION_TC_FWD_ENTRY(attention_tc_d64_fwd_bf16, 64)          // D = 64
ATTENTION_TC_BWD_DQ_ENTRY(attention_tc_d64_bwd_dq_bf16, 64)
ATTENTION_TC_BWD_DKDV_ENTRY(attention_tc_d64_bwd_dkdv_bf16, 64)
// clang-format on
