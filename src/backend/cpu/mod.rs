//! The CPU backend: reference semantics for every op, and a fast fallback.
//! `ops.rs` implements the [`Backend`](crate::backend::Backend) interface on
//! top of the kernel files.
//! Each file holds one op family with its forward and backward side by side.
//! Functions are generic over [`Float`](crate::tensor::Float) so the same
//! code runs in f64 for gradient checks and in f32 for real work.

pub mod activation;
pub mod adamw;
pub mod attention;
pub mod bf16_linear;
pub mod dropout;
pub mod epilogue;
pub mod fused_attention;
pub mod int8;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
mod ops;
pub mod packed_attention;
pub mod packed_linear;
pub mod relative_attention;
pub mod rotary;
pub mod softmax;

pub use ops::Cpu;

use rayon::prelude::*;

/// Rows per rayon task for row-wise ops: large enough that the scheduling
/// cost stays small next to the work.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (16_384 / cols.max(1)).max(1)
}

/// Applies `f(row_index, row)` to every row of `data` (rows of `cols`) in parallel.
pub(crate) fn for_each_row_mut<T: Send>(data: &mut [T], cols: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if cols == 0 {
        return;
    }
    let per_task = rows_per_task(cols);
    data.par_chunks_mut(cols * per_task).enumerate().for_each(|(chunk_index, chunk)| {
        for (i, row) in chunk.chunks_mut(cols).enumerate() {
            f(chunk_index * per_task + i, row);
        }
    });
}

/// Independent accumulators for reductions: a float sum is a serial chain of
/// dependent adds unless it is split, and split this way it vectorises.
const LANES: usize = 8;

/// Σ x, in 8 interleaved partial sums.
#[inline]
pub(crate) fn sum<T: crate::tensor::Float>(x: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut total = tail.iter().copied().sum::<T>();
    for a in acc {
        total += a;
    }
    total
}

/// Σ (x_i − mean)², in 8 interleaved partial sums.
#[inline]
pub(crate) fn squared_deviation<T: crate::tensor::Float>(x: &[T], mean: T) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let d = c[l] - mean;
            acc[l] += d * d;
        }
    }
    let mut total = tail.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>();
    for a in acc {
        total += a;
    }
    total
}

/// Σ a_i·b_i, in 8 interleaved partial sums.
#[inline]
pub(crate) fn dot<T: crate::tensor::Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let n = a.len().min(b.len());
    let full = n / LANES * LANES;
    for i in (0..full).step_by(LANES) {
        for l in 0..LANES {
            acc[l] += a[i + l] * b[i + l];
        }
    }
    let mut total = T::ZERO;
    for i in full..n {
        total += a[i] * b[i];
    }
    for v in acc {
        total += v;
    }
    total
}
