// Row copies by index: gather (a table's rows, or a padded batch's real
// tokens) and its inverse, scatter. RoBERTa's position rows from
// pad_token_id + 1 are a gather of the position table, and its gradient the
// scatter back. CPU reference: src/backend/cpu/layout.rs (gather_rows,
// scatter_rows).
//
// Copies, not arithmetic: every element keeps its bits, in any storage type.
// Indices are distinct (the launcher checks them), so a scatter has one
// writer per output row and needs no atomics. Grid-stride over n·cols.
#include "common.cuh"

// x (R, cols) T, rows (n) u32 < R -> out (n, cols) T: out[i] = x[rows[i]]
template <typename T>
BERTH_DEVICE_INLINE void gather_rows_impl(const T* x, const unsigned* rows, T* out, int n, int cols) {
    long long total = (long long)n * cols;
    for (long long i = grid_start(); i < total; i += grid_stride()) {
        long long r = i / cols;
        out[i] = x[(long long)rows[r] * cols + i % cols];
    }
}

// x (n, cols) T, rows (n) u32 distinct -> out (R, cols) T: out[rows[i]] = x[i];
// the other rows of out are left as they are (the launcher zeroes them)
template <typename T>
BERTH_DEVICE_INLINE void scatter_rows_impl(const T* x, const unsigned* rows, T* out, int n, int cols) {
    long long total = (long long)n * cols;
    for (long long i = grid_start(); i < total; i += grid_stride()) {
        long long r = i / cols;
        out[(long long)rows[r] * cols + i % cols] = x[i];
    }
}

// x (R, cols) f32, rows (n) u32 -> out (n, cols) f32
extern "C" __global__ void gather_rows_f32(const float* x, const unsigned* rows, float* out, int n, int cols) {
    gather_rows_impl(x, rows, out, n, cols);
}

// x (R, cols) bf16, rows (n) u32 -> out (n, cols) bf16
extern "C" __global__ void gather_rows_bf16(const __nv_bfloat16* x, const unsigned* rows, __nv_bfloat16* out, int n, int cols) {
    gather_rows_impl(x, rows, out, n, cols);
}

// x (n, cols) f32, rows (n) u32 -> out (R, cols) f32, rows[i] written
extern "C" __global__ void scatter_rows_f32(const float* x, const unsigned* rows, float* out, int n, int cols) {
    scatter_rows_impl(x, rows, out, n, cols);
}

// x (n, cols) bf16, rows (n) u32 -> out (R, cols) bf16, rows[i] written
extern "C" __global__ void scatter_rows_bf16(const __nv_bfloat16* x, const unsigned* rows, __nv_bfloat16* out, int n, int cols) {
    scatter_rows_impl(x, rows, out, n, cols);
}
