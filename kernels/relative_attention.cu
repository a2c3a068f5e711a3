// DeBERTa's disentangled attention over a padded batch, composed of simple
// kernels that materialise the (B, H, T, T) scores (the first device path;
// a flash-style kernel with the relative terms inside is the goal).
//
//   s[b,h,i,j] = (q_i·k_j + q_i·pk[r(i,j)] + k_j·pq[r(i,j)]) * scale
//
// q, k, v (B, T, H·D); pq, pk (R, H·D), the layer's projections of the
// relative embeddings; rows (2T - 1): the table row r read by distance
// i - j, at index i - j + T - 1; key_mask (B·T), 1 = real token. The mask is
// query x key: a padding query (or a row whose keys are all padding) is
// uniform over all T keys and gets zero gradient, as in transformers and the
// CPU (src/backend/cpu/relative_attention.rs). Dropout on the probabilities
// uses the CPU's counter-based masks over the (B, H, T, T) flat index.
// Everything computes in f32; T is the storage type (float or bf16).
// One thread per output element (grid-stride); probabilities and score
// gradients are f32 scratch of (B, H, T, T).
#include "common.cuh"

struct RelDims {
    int batch, seq, heads, dim, positions;
};

BERTH_DEVICE_INLINE long long rel_at(int b, int t, int h, int d, const RelDims& n) {
    return (((long long)b * n.seq + t) * n.heads + h) * n.dim + d;
}

// The table row of query i and key j.
BERTH_DEVICE_INLINE int rel_row(const unsigned* rows, int i, int j, int seq) {
    return (int)rows[i - j + seq - 1];
}

// raw scores (B, H, T, T) f32: the three terms, scaled
template <typename T>
BERTH_DEVICE_INLINE void rel_scores(const T* q, const T* k, const T* pq, const T* pk, const unsigned* rows,
                                    float* scores, RelDims n, float scale) {
    long long total = (long long)n.batch * n.heads * n.seq * n.seq;
    int width = n.heads * n.dim;
    for (long long e = grid_start(); e < total; e += grid_stride()) {
        int j = (int)(e % n.seq);
        int i = (int)((e / n.seq) % n.seq);
        int h = (int)((e / ((long long)n.seq * n.seq)) % n.heads);
        int b = (int)(e / ((long long)n.seq * n.seq * n.heads));
        long long r = rel_row(rows, i, j, n.seq);
        float content = 0.0f, c2p = 0.0f, p2c = 0.0f;
        for (int d = 0; d < n.dim; ++d) {
            float qi = load_f32(q, rel_at(b, i, h, d, n)), kj = load_f32(k, rel_at(b, j, h, d, n));
            content += qi * kj;
            c2p += qi * load_f32(pk, r * width + (long long)h * n.dim + d);
            p2c += kj * load_f32(pq, r * width + (long long)h * n.dim + d);
        }
        scores[e] = (content + c2p + p2c) * scale;
    }
}

// Whether row (b, ·, i) is the constant uniform row: a padding query, or no real key.
BERTH_DEVICE_INLINE bool rel_uniform_row(const unsigned char* key_mask, int b, int i, int seq) {
    if (key_mask[(long long)b * seq + i] == 0) return true;
    for (int j = 0; j < seq; ++j) {
        if (key_mask[(long long)b * seq + j] != 0) return false;
    }
    return true;
}

// scores -> probabilities in place, one thread per (b, h, i) row
extern "C" __global__ void rel_softmax_f32(float* probs, const unsigned char* key_mask, int batch, int heads, int seq) {
    long long rows_total = (long long)batch * heads * seq;
    for (long long row = grid_start(); row < rows_total; row += grid_stride()) {
        int i = (int)(row % seq);
        int b = (int)(row / ((long long)heads * seq));
        float* p = probs + row * seq;
        const unsigned char* mask = key_mask + (long long)b * seq;
        if (rel_uniform_row(key_mask, b, i, seq)) {
            for (int j = 0; j < seq; ++j) p[j] = 1.0f / (float)seq;
            continue;
        }
        float max = -3.402823466e38f;
        for (int j = 0; j < seq; ++j) {
            if (mask[j] != 0) max = fmaxf(max, p[j]);
        }
        float sum = 0.0f;
        for (int j = 0; j < seq; ++j) {
            float e = mask[j] != 0 ? expf(p[j] - max) : 0.0f;
            p[j] = e;
            sum += e;
        }
        for (int j = 0; j < seq; ++j) p[j] /= sum;
    }
}

// context (B, T, H·D) = (P ∘ Z) · V
template <typename T>
BERTH_DEVICE_INLINE void rel_context(const float* probs, const T* v, T* out, RelDims n, unsigned long long key,
                                     unsigned threshold, float keep_scale) {
    long long total = (long long)n.batch * n.seq * n.heads * n.dim;
    for (long long e = grid_start(); e < total; e += grid_stride()) {
        int d = (int)(e % n.dim);
        int h = (int)((e / n.dim) % n.heads);
        int i = (int)((e / ((long long)n.dim * n.heads)) % n.seq);
        int b = (int)(e / ((long long)n.dim * n.heads * n.seq));
        long long row = (((long long)b * n.heads + h) * n.seq + i) * n.seq;
        float acc = 0.0f;
        for (int j = 0; j < n.seq; ++j) {
            acc += probs[row + j] * attn_dropout(key, threshold, keep_scale, row + j) * load_f32(v, rel_at(b, j, h, d, n));
        }
        store_f32(out, e, acc);
    }
}

// dscores (B, H, T, T) f32, one thread per (b, h, i) row:
// dP = Z ∘ (dout·vᵀ), dS = P ∘ (dP − Σ P∘dP) · scale; uniform rows 0
template <typename T>
BERTH_DEVICE_INLINE void rel_dscores(const float* probs, const T* v, const T* dout, const unsigned char* key_mask,
                                     float* dscores, RelDims n, float scale, unsigned long long key,
                                     unsigned threshold, float keep_scale) {
    long long rows_total = (long long)n.batch * n.heads * n.seq;
    for (long long row = grid_start(); row < rows_total; row += grid_stride()) {
        int i = (int)(row % n.seq);
        int h = (int)((row / n.seq) % n.heads);
        int b = (int)(row / ((long long)n.heads * n.seq));
        float* ds = dscores + row * n.seq;
        const float* p = probs + row * n.seq;
        if (rel_uniform_row(key_mask, b, i, n.seq)) {
            for (int j = 0; j < n.seq; ++j) ds[j] = 0.0f;
            continue;
        }
        float centre = 0.0f;
        for (int j = 0; j < n.seq; ++j) {
            float dp = 0.0f;
            for (int d = 0; d < n.dim; ++d) dp += load_f32(dout, rel_at(b, i, h, d, n)) * load_f32(v, rel_at(b, j, h, d, n));
            dp *= attn_dropout(key, threshold, keep_scale, row * n.seq + j);
            ds[j] = dp;
            centre += p[j] * dp;
        }
        for (int j = 0; j < n.seq; ++j) ds[j] = p[j] * (ds[j] - centre) * scale;
    }
}

// dq (B, T, H·D) = Σ_j dS_ij (k_j + pk[r(i,j)]) when `by_query`;
// dk (B, T, H·D) = Σ_i dS_ij (q_i + pq[r(i,j)]) otherwise (x = q, table = pq)
template <typename T>
BERTH_DEVICE_INLINE void rel_dqk(const float* dscores, const T* x, const T* table, const unsigned* rows, T* dx,
                                 RelDims n, bool by_query) {
    long long total = (long long)n.batch * n.seq * n.heads * n.dim;
    int width = n.heads * n.dim;
    for (long long e = grid_start(); e < total; e += grid_stride()) {
        int d = (int)(e % n.dim);
        int h = (int)((e / n.dim) % n.heads);
        int a = (int)((e / ((long long)n.dim * n.heads)) % n.seq);
        int b = (int)(e / ((long long)n.dim * n.heads * n.seq));
        long long group = ((long long)b * n.heads + h) * n.seq * n.seq;
        float acc = 0.0f;
        for (int o = 0; o < n.seq; ++o) {
            int i = by_query ? a : o, j = by_query ? o : a;
            float ds = dscores[group + (long long)i * n.seq + j];
            long long r = rel_row(rows, i, j, n.seq);
            acc += ds * (load_f32(x, rel_at(b, o, h, d, n)) + load_f32(table, r * width + (long long)h * n.dim + d));
        }
        store_f32(dx, e, acc);
    }
}

// dv (B, T, H·D) = (P ∘ Z)ᵀ · dout
template <typename T>
BERTH_DEVICE_INLINE void rel_dv(const float* probs, const T* dout, T* dv, RelDims n, unsigned long long key,
                                unsigned threshold, float keep_scale) {
    long long total = (long long)n.batch * n.seq * n.heads * n.dim;
    for (long long e = grid_start(); e < total; e += grid_stride()) {
        int d = (int)(e % n.dim);
        int h = (int)((e / n.dim) % n.heads);
        int j = (int)((e / ((long long)n.dim * n.heads)) % n.seq);
        int b = (int)(e / ((long long)n.dim * n.heads * n.seq));
        long long group = ((long long)b * n.heads + h) * n.seq * n.seq;
        float acc = 0.0f;
        for (int i = 0; i < n.seq; ++i) {
            long long at = group + (long long)i * n.seq + j;
            acc += probs[at] * attn_dropout(key, threshold, keep_scale, at) * load_f32(dout, rel_at(b, i, h, d, n));
        }
        store_f32(dv, e, acc);
    }
}

// dpk (R, H·D) = Σ over (b, i, j) read at row r of dS_ij q_i, and
// dpq (R, H·D) = Σ of dS_ij k_j: one thread per (r, h, d) element of both
template <typename T>
BERTH_DEVICE_INLINE void rel_dtables(const float* dscores, const T* q, const T* k, const unsigned* rows, T* dpq, T* dpk,
                                     RelDims n) {
    long long total = (long long)n.positions * n.heads * n.dim;
    for (long long e = grid_start(); e < total; e += grid_stride()) {
        int d = (int)(e % n.dim);
        int h = (int)((e / n.dim) % n.heads);
        int r = (int)(e / ((long long)n.dim * n.heads));
        float acc_q = 0.0f, acc_k = 0.0f;
        for (int delta = -(n.seq - 1); delta < n.seq; ++delta) {
            if ((int)rows[delta + n.seq - 1] != r) continue;
            for (int b = 0; b < n.batch; ++b) {
                long long group = ((long long)b * n.heads + h) * n.seq * n.seq;
                for (int i = delta > 0 ? delta : 0; i < n.seq && i - delta < n.seq; ++i) {
                    int j = i - delta;
                    float ds = dscores[group + (long long)i * n.seq + j];
                    acc_k += ds * load_f32(q, rel_at(b, i, h, d, n));
                    acc_q += ds * load_f32(k, rel_at(b, j, h, d, n));
                }
            }
        }
        store_f32(dpk, e, acc_k);
        store_f32(dpq, e, acc_q);
    }
}

// f32: q, k (B, T, H·D), pq, pk (R, H·D), rows (2T - 1) -> scores (B, H, T, T) f32
extern "C" __global__ void rel_scores_f32(const float* q, const float* k, const float* pq, const float* pk, const unsigned* rows, float* scores, int batch, int seq, int heads, int dim, int positions, float scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_scores(q, k, pq, pk, rows, scores, n, scale);
}

// f32: probs (B, H, T, T) f32, v (B, T, H·D) -> out (B, T, H·D)
extern "C" __global__ void rel_context_f32(const float* probs, const float* v, float* out, int batch, int seq, int heads, int dim, int positions, unsigned long long key, unsigned threshold, float keep_scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_context(probs, v, out, n, key, threshold, keep_scale);
}

// f32: probs f32, v, dout (B, T, H·D), key_mask (B·T) -> dscores (B, H, T, T) f32
extern "C" __global__ void rel_dscores_f32(const float* probs, const float* v, const float* dout, const unsigned char* key_mask, float* dscores, int batch, int seq, int heads, int dim, int positions, float scale, unsigned long long key, unsigned threshold, float keep_scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dscores(probs, v, dout, key_mask, dscores, n, scale, key, threshold, keep_scale);
}

// f32: dscores f32, x = k or q (B, T, H·D), table = pk or pq (R, H·D) -> dq or dk (B, T, H·D)
extern "C" __global__ void rel_dqk_f32(const float* dscores, const float* x, const float* table, const unsigned* rows, float* dx, int batch, int seq, int heads, int dim, int positions, int by_query) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dqk(dscores, x, table, rows, dx, n, by_query != 0);
}

// f32: probs f32, dout (B, T, H·D) -> dv (B, T, H·D)
extern "C" __global__ void rel_dv_f32(const float* probs, const float* dout, float* dv, int batch, int seq, int heads, int dim, int positions, unsigned long long key, unsigned threshold, float keep_scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dv(probs, dout, dv, n, key, threshold, keep_scale);
}

// f32: dscores f32, q, k (B, T, H·D) -> dpq, dpk (R, H·D)
extern "C" __global__ void rel_dtables_f32(const float* dscores, const float* q, const float* k, const unsigned* rows, float* dpq, float* dpk, int batch, int seq, int heads, int dim, int positions) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dtables(dscores, q, k, rows, dpq, dpk, n);
}

// bf16: q, k (B, T, H·D), pq, pk (R, H·D), rows (2T - 1) -> scores (B, H, T, T) f32
extern "C" __global__ void rel_scores_bf16(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* pq, const __nv_bfloat16* pk, const unsigned* rows, float* scores, int batch, int seq, int heads, int dim, int positions, float scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_scores(q, k, pq, pk, rows, scores, n, scale);
}

// bf16: probs (B, H, T, T) f32, v (B, T, H·D) -> out (B, T, H·D)
extern "C" __global__ void rel_context_bf16(const float* probs, const __nv_bfloat16* v, __nv_bfloat16* out, int batch, int seq, int heads, int dim, int positions, unsigned long long key, unsigned threshold, float keep_scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_context(probs, v, out, n, key, threshold, keep_scale);
}

// bf16: probs f32, v, dout (B, T, H·D), key_mask (B·T) -> dscores (B, H, T, T) f32
extern "C" __global__ void rel_dscores_bf16(const float* probs, const __nv_bfloat16* v, const __nv_bfloat16* dout, const unsigned char* key_mask, float* dscores, int batch, int seq, int heads, int dim, int positions, float scale, unsigned long long key, unsigned threshold, float keep_scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dscores(probs, v, dout, key_mask, dscores, n, scale, key, threshold, keep_scale);
}

// bf16: dscores f32, x = k or q (B, T, H·D), table = pk or pq (R, H·D) -> dq or dk (B, T, H·D)
extern "C" __global__ void rel_dqk_bf16(const float* dscores, const __nv_bfloat16* x, const __nv_bfloat16* table, const unsigned* rows, __nv_bfloat16* dx, int batch, int seq, int heads, int dim, int positions, int by_query) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dqk(dscores, x, table, rows, dx, n, by_query != 0);
}

// bf16: probs f32, dout (B, T, H·D) -> dv (B, T, H·D)
extern "C" __global__ void rel_dv_bf16(const float* probs, const __nv_bfloat16* dout, __nv_bfloat16* dv, int batch, int seq, int heads, int dim, int positions, unsigned long long key, unsigned threshold, float keep_scale) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dv(probs, dout, dv, n, key, threshold, keep_scale);
}

// bf16: dscores f32, q, k (B, T, H·D) -> dpq, dpk (R, H·D)
extern "C" __global__ void rel_dtables_bf16(const float* dscores, const __nv_bfloat16* q, const __nv_bfloat16* k, const unsigned* rows, __nv_bfloat16* dpq, __nv_bfloat16* dpk, int batch, int seq, int heads, int dim, int positions) {
    RelDims n = {batch, seq, heads, dim, positions};
    rel_dtables(dscores, q, k, rows, dpq, dpk, n);
}
