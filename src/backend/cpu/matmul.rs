//! Matrix products through the `gemm` crate (no system BLAS).
//!
//! Transposes are expressed with strides, so no operand is ever copied.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::tensor::Float;

/// A row-major matrix (rows, cols) read either as is or transposed.
#[derive(Clone, Copy)]
pub struct Operand<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a, T> Operand<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize, transposed: bool) -> Self {
        Operand { data, rows, cols, transposed }
    }

    /// Shape of the operand as used in the product.
    fn logical(&self) -> (usize, usize) {
        if self.transposed { (self.cols, self.rows) } else { (self.rows, self.cols) }
    }

    /// (row stride, column stride) of the logical matrix.
    fn strides(&self) -> (isize, isize) {
        if self.transposed { (1, self.cols as isize) } else { (self.cols as isize, 1) }
    }
}

/// c (M, N) = a' (M, K) · b' (K, N), or c += … when `accumulate`.
/// `parallel` lets gemm use the rayon pool for this one product.
pub fn matmul<T: Float>(a: Operand<T>, b: Operand<T>, c: &mut [T], accumulate: bool, parallel: bool) {
    let (m, k) = a.logical();
    let (k2, n) = b.logical();
    assert_eq!(k, k2, "matmul inner dimensions (checked by the caller)");
    assert_eq!(c.len(), m * n);
    assert!(a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::ZERO);
        }
        return;
    }
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let parallelism = if parallel && m * n * k >= 32 * 32 * 32 { Parallelism::Rayon(0) } else { Parallelism::None };
    // SAFETY: the slices are at least as long as the strided views read or
    // written (asserted above), and `c` does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Batched product: for each batch index i, c[i] (M, N) (+)= a[i]' · b[i]'.
/// `a` holds `batch` matrices of (a_rows, a_cols), likewise `b`.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul<T: Float>(
    batch: usize,
    a: &[T],
    a_rows: usize,
    a_cols: usize,
    a_transposed: bool,
    b: &[T],
    b_rows: usize,
    b_cols: usize,
    b_transposed: bool,
    c: &mut [T],
    accumulate: bool,
) {
    if batch == 0 {
        return;
    }
    let a_size = a_rows * a_cols;
    let b_size = b_rows * b_cols;
    let c_size = c.len() / batch;
    let threads = rayon::current_num_threads();
    if batch >= threads {
        // Enough independent products to keep every core busy on its own.
        c.par_chunks_mut(c_size.max(1)).enumerate().for_each(|(i, c_i)| {
            let a_i = Operand::new(&a[i * a_size..(i + 1) * a_size], a_rows, a_cols, a_transposed);
            let b_i = Operand::new(&b[i * b_size..(i + 1) * b_size], b_rows, b_cols, b_transposed);
            matmul(a_i, b_i, c_i, accumulate, false);
        });
    } else {
        for (i, c_i) in c.chunks_mut(c_size.max(1)).enumerate() {
            let a_i = Operand::new(&a[i * a_size..(i + 1) * a_size], a_rows, a_cols, a_transposed);
            let b_i = Operand::new(&b[i * b_size..(i + 1) * b_size], b_rows, b_cols, b_transposed);
            matmul(a_i, b_i, c_i, accumulate, true);
        }
    }
}

/// src (rows, cols) row-major -> (cols, rows) row-major, in cache-sized tiles.
pub fn transpose<T: Float>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut dst = crate::tensor::pool::take::<T>(rows * cols);
    if rows == 0 || cols == 0 {
        return dst;
    }
    // Each task writes TILE whole rows of dst (= TILE columns of src).
    dst.par_chunks_mut(TILE * rows).enumerate().for_each(|(block, out)| {
        let c0 = block * TILE;
        let c1 = (c0 + TILE).min(cols);
        for r0 in (0..rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(rows);
            for c in c0..c1 {
                let out_row = &mut out[(c - c0) * rows..(c - c0 + 1) * rows];
                for r in r0..r1 {
                    out_row[r] = src[r * cols + c];
                }
            }
        }
    });
    dst
}

/// x (N, K), the weight (out, K) — or its (K, out) transposed copy, which
/// the gemm crate reads up to 2.5× faster than the HF layout through strides
/// — and an optional bias (out) -> y (N, out).
pub fn linear_fwd<T: Float>(x: &[T], n: usize, k: usize, weight: Operand<T>, bias: Option<&[T]>, out_features: usize) -> Vec<T> {
    let mut y = crate::tensor::pool::take::<T>(n * out_features);
    // The product overwrites y, then the bias is added in one pass: the
    // gemm crate runs about 15% slower when it has to read y back.
    matmul(Operand::new(x, n, k, false), weight, &mut y, false, true);
    if let Some(bias) = bias {
        y.par_chunks_mut((out_features * 64).max(1)).for_each(|rows| {
            for row in rows.chunks_mut(out_features.max(1)) {
                for (v, &bv) in row.iter_mut().zip(bias) {
                    *v += bv;
                }
            }
        });
    }
    y
}

/// dy (N, out), weight (out, K) -> dx (N, K) = dy · W.
pub fn linear_bwd_input<T: Float>(dy: &[T], n: usize, weight: &[T], out_features: usize, k: usize) -> Vec<T> {
    let mut dx = crate::tensor::pool::take::<T>(n * k);
    matmul(Operand::new(dy, n, out_features, false), Operand::new(weight, out_features, k, false), &mut dx, false, true);
    dx
}

/// dy (N, out), x (N, K) -> dW (out, K) = dyᵀ · x.
pub fn linear_bwd_weight<T: Float>(dy: &[T], x: &[T], n: usize, out_features: usize, k: usize) -> Vec<T> {
    let mut dw = crate::tensor::pool::take::<T>(out_features * k);
    matmul(Operand::new(dy, n, out_features, true), Operand::new(x, n, k, false), &mut dw, false, true);
    dw
}
