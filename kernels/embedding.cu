// BERT's embeddings, forward and backward side by side (DESIGN.md, Decision 7).
//
//   out[n] = word[input_ids[n]] + token_type[token_type_ids[n]] + position[n % seq_len]
//
// added in that order (HF's) in f32 and stored once as T. An id outside its
// table contributes nothing: the caller validates ids, and the kernels only
// make sure they never read out of bounds. The forward fused with the
// LayerNorm that follows (embedding_ln_*) lives in kernels/layernorm.cu.
//
// The backward accumulates into f32 table gradients, deterministically and
// without float atomics:
//   - words and positions: the launcher groups the token rows of each table
//     row on the host (ascending token order) and cuts each group into items
//     of at most 32 tokens. embedding_bwd_rows_* sums each item's rows in
//     order: a group of one item adds straight into the table, a longer group
//     writes its items to partial slots that embedding_bwd_merge_f32 adds up
//     in item order. Every (table row, column) has exactly one writer.
//   - token types: embedding_bwd_types_* sums fixed chunks of tokens per type
//     into partial (chunks, types, cols); embedding_bwd_types_merge_f32 adds
//     the chunks up in chunk order.
// Sums and partials are f64: an f32 sum over the ~8K tokens of one token
// type is off by about 2^-23·sqrt(8K) ≈ 1e-5 (measured on the H100), which
// the f32 parity rule would fail. Each table element is rounded to f32 once.
#include "common.cuh"

#define EMB_SLOT_BIT 0x80000000u

// One warp per row, grid-stride over rows; lanes stride the columns.
// input_ids, token_type_ids (rows) u32; word (vocab, cols), position
// (positions, cols), token_type (types, cols) -> out (rows, cols)
template <typename T>
BERTH_DEVICE_INLINE void embedding_fwd(const unsigned* input_ids, const unsigned* token_type_ids, const T* word,
                                       const T* position, const T* token_type, T* out, int vocab, int positions,
                                       int types, int seq_len, int rows, int cols) {
    int lane = threadIdx.x % BERTH_WARP_SIZE;
    long long warps = grid_stride() / BERTH_WARP_SIZE;
    for (long long n = grid_start() / BERTH_WARP_SIZE; n < rows; n += warps) {
        unsigned id = input_ids[n];
        unsigned type = token_type_ids[n];
        long long pos = n % seq_len;
        // An out-of-range id reads nothing and adds nothing.
        const T* w = id < (unsigned)vocab ? word + (long long)id * cols : nullptr;
        const T* t = type < (unsigned)types ? token_type + (long long)type * cols : nullptr;
        const T* p = pos < positions ? position + pos * cols : nullptr;
        T* o = out + n * cols;
        if (w && t && p) {
            for (int c = lane; c < cols; c += BERTH_WARP_SIZE) store_f32(o, c, load_f32(w, c) + load_f32(t, c) + load_f32(p, c));
        } else {
            for (int c = lane; c < cols; c += BERTH_WARP_SIZE) {
                float v = w ? load_f32(w, c) : 0.0f;
                if (t) v += load_f32(t, c);
                if (p) v += load_f32(p, c);
                store_f32(o, c, v);
            }
        }
    }
}

// One thread per (item, column), grid-stride. Item i covers
// token_rows[item_begin[i] .. item_begin[i + 1]] (ascending token order);
// item_dest[i] is a table row (added to) or EMB_SLOT_BIT | slot (written).
// dsum (tokens, cols) -> table (table_rows, cols) f32 accumulated,
// partial (slots, cols) f64 written
template <typename T>
BERTH_DEVICE_INLINE void embedding_rows_bwd(const unsigned* item_begin, const unsigned* item_dest,
                                            const unsigned* token_rows, const T* dsum, float* table, double* partial,
                                            int items, int cols) {
    long long n_total = (long long)items * cols;
    for (long long i = grid_start(); i < n_total; i += grid_stride()) {
        long long item = i / cols;
        int c = (int)(i % cols);
        double acc = 0.0;
        for (unsigned r = item_begin[item]; r < item_begin[item + 1]; ++r) {
            acc += load_f32(dsum, (long long)token_rows[r] * cols + c);
        }
        unsigned dest = item_dest[item];
        if (dest & EMB_SLOT_BIT) {
            partial[(long long)(dest & ~EMB_SLOT_BIT) * cols + c] = acc;
        } else {
            float* t = table + (long long)dest * cols + c;
            *t = (float)(*t + acc);
        }
    }
}

// One thread per (token chunk, column), grid-stride; chunk g covers tokens
// [g·chunk, (g+1)·chunk). Each thread writes partial[g, :, c]; a type id
// outside [0, types) matches no pass and is skipped.
// token_type_ids (rows) u32, dsum (rows, cols) -> partial (chunks, types, cols) f64 written
template <typename T>
BERTH_DEVICE_INLINE void embedding_types_bwd(const unsigned* token_type_ids, const T* dsum, double* partial, int rows,
                                             int cols, int types, int chunk) {
    int chunks = (rows + chunk - 1) / chunk;
    long long n_total = (long long)chunks * cols;
    for (long long i = grid_start(); i < n_total; i += grid_stride()) {
        long long g = i / cols;
        int c = (int)(i % cols);
        long long end = (g + 1) * chunk < rows ? (g + 1) * chunk : rows;
        // One pass over the chunk per type (types is 2 for BERT): the sum
        // stays in a register, and the rereads hit the cache.
        for (int t = 0; t < types; ++t) {
            double acc = 0.0;
            for (long long n = g * chunk; n < end; ++n) {
                if (token_type_ids[n] == (unsigned)t) acc += load_f32(dsum, n * cols + c);
            }
            partial[(g * types + t) * cols + c] = acc;
        }
    }
}

// ---------------------------------------------------------------------------
// extern "C" entry points
// ---------------------------------------------------------------------------

// input_ids, token_type_ids (rows) u32; word (vocab, cols), position
// (positions, cols), token_type (types, cols) f32 -> out (rows, cols) f32
extern "C" __global__ void embedding_fwd_f32(const unsigned* input_ids, const unsigned* token_type_ids, const float* word, const float* position, const float* token_type, float* out, int vocab, int positions, int types, int seq_len, int rows, int cols) {
    embedding_fwd(input_ids, token_type_ids, word, position, token_type, out, vocab, positions, types, seq_len, rows, cols);
}

// input_ids, token_type_ids (rows) u32; word (vocab, cols), position
// (positions, cols), token_type (types, cols) bf16 -> out (rows, cols) bf16, summed in f32
extern "C" __global__ void embedding_fwd_bf16(const unsigned* input_ids, const unsigned* token_type_ids, const __nv_bfloat16* word, const __nv_bfloat16* position, const __nv_bfloat16* token_type, __nv_bfloat16* out, int vocab, int positions, int types, int seq_len, int rows, int cols) {
    embedding_fwd(input_ids, token_type_ids, word, position, token_type, out, vocab, positions, types, seq_len, rows, cols);
}

// item_begin (items + 1), item_dest (items), token_rows u32; dsum (tokens,
// cols) f32 -> table (table_rows, cols) f32 accumulated, partial (slots, cols) f64
extern "C" __global__ void embedding_bwd_rows_f32(const unsigned* item_begin, const unsigned* item_dest, const unsigned* token_rows, const float* dsum, float* table, double* partial, int items, int cols) {
    embedding_rows_bwd(item_begin, item_dest, token_rows, dsum, table, partial, items, cols);
}

// item_begin (items + 1), item_dest (items), token_rows u32; dsum (tokens,
// cols) bf16 -> table (table_rows, cols) f32 accumulated, partial (slots, cols) f64
extern "C" __global__ void embedding_bwd_rows_bf16(const unsigned* item_begin, const unsigned* item_dest, const unsigned* token_rows, const __nv_bfloat16* dsum, float* table, double* partial, int items, int cols) {
    embedding_rows_bwd(item_begin, item_dest, token_rows, dsum, table, partial, items, cols);
}

// One thread per (group, column), grid-stride: group g owns slots
// [group_begin[g], group_begin[g + 1]), added in slot order.
// group_begin (groups + 1), group_dest (groups) u32; partial (slots, cols) f64
// -> table (table_rows, cols) f32 accumulated
extern "C" __global__ void embedding_bwd_merge_f32(const unsigned* group_begin, const unsigned* group_dest, const double* partial, float* table, int groups, int cols) {
    long long n_total = (long long)groups * cols;
    for (long long i = grid_start(); i < n_total; i += grid_stride()) {
        long long g = i / cols;
        int c = (int)(i % cols);
        double acc = 0.0;
        for (unsigned s = group_begin[g]; s < group_begin[g + 1]; ++s) acc += partial[(long long)s * cols + c];
        float* t = table + (long long)group_dest[g] * cols + c;
        *t = (float)(*t + acc);
    }
}

// token_type_ids (rows) u32, dsum (rows, cols) f32 -> partial (chunks, types, cols) f64
extern "C" __global__ void embedding_bwd_types_f32(const unsigned* token_type_ids, const float* dsum, double* partial, int rows, int cols, int types, int chunk) {
    embedding_types_bwd(token_type_ids, dsum, partial, rows, cols, types, chunk);
}

// token_type_ids (rows) u32, dsum (rows, cols) bf16 -> partial (chunks, types, cols) f64
extern "C" __global__ void embedding_bwd_types_bf16(const unsigned* token_type_ids, const __nv_bfloat16* dsum, double* partial, int rows, int cols, int types, int chunk) {
    embedding_types_bwd(token_type_ids, dsum, partial, rows, cols, types, chunk);
}

// One thread per (type, column), grid-stride, chunks added in order.
// partial (chunks, types, cols) f64 -> dtoken_type (types, cols) f32 accumulated
extern "C" __global__ void embedding_bwd_types_merge_f32(const double* partial, float* dtoken_type, int chunks, int types, int cols) {
    long long n_total = (long long)types * cols;
    for (long long i = grid_start(); i < n_total; i += grid_stride()) {
        double acc = 0.0;
        for (int g = 0; g < chunks; ++g) acc += partial[(long long)g * types * cols + i];
        dtoken_type[i] = (float)(dtoken_type[i] + acc);
    }
}
