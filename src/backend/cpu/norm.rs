//! Layer normalisation over the last dimension.

use rayon::prelude::*;

use super::{for_each_row_mut, rows_per_task};
use crate::tensor::Float;

/// x (N, C), weight (C), bias (C) -> y (N, C), mean (N), rstd (N).
pub fn layer_norm_fwd<T: Float>(x: &[T], weight: &[T], bias: &[T], cols: usize, eps: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = x.len() / cols.max(1);
    let mut y = crate::tensor::pool::take::<T>(x.len());
    let mut stats = vec![(T::ZERO, T::ZERO); rows];
    let eps = T::from_f64(eps);
    let n = T::from_f64(cols as f64);
    let per_task = rows_per_task(cols);
    y.par_chunks_mut(cols * per_task).zip(stats.par_chunks_mut(per_task)).enumerate().for_each(|(chunk, (y_chunk, st))| {
        for (i, y_row) in y_chunk.chunks_mut(cols).enumerate() {
            let row = chunk * per_task + i;
            let x_row = &x[row * cols..(row + 1) * cols];
            // Two passes: the mean first, then the centred variance, as PyTorch
            // does; each in 8 interleaved partial sums, which vectorise (a
            // serial sum over a row made layer norm latency-bound).
            let mean = super::sum(x_row) / n;
            let var = super::squared_deviation(x_row, mean) / n;
            let rstd = T::ONE / (var + eps).sqrt();
            for c in 0..cols {
                y_row[c] = (x_row[c] - mean) * rstd * weight[c] + bias[c];
            }
            st[i] = (mean, rstd);
        }
    });
    let (mean, rstd) = stats.into_iter().unzip();
    (y, mean, rstd)
}

/// Gradients of layer norm: returns dx (N, C), dweight (C), dbias (C).
pub fn layer_norm_bwd<T: Float>(x: &[T], weight: &[T], mean: &[T], rstd: &[T], dy: &[T], cols: usize) -> (Vec<T>, Vec<T>, Vec<T>) {
    let n = T::from_f64(cols as f64);
    let mut dx = crate::tensor::pool::take::<T>(x.len());
    for_each_row_mut(&mut dx, cols, |row, dx_row| {
        let x_row = &x[row * cols..(row + 1) * cols];
        let dy_row = &dy[row * cols..(row + 1) * cols];
        let (mu, rs) = (mean[row], rstd[row]);
        let mut sum_dxhat = T::ZERO;
        let mut sum_dxhat_xhat = T::ZERO;
        for c in 0..cols {
            let xhat = (x_row[c] - mu) * rs;
            let dxhat = dy_row[c] * weight[c];
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
        }
        let mean_dxhat = sum_dxhat / n;
        let mean_dxhat_xhat = sum_dxhat_xhat / n;
        for c in 0..cols {
            let xhat = (x_row[c] - mu) * rs;
            let dxhat = dy_row[c] * weight[c];
            dx_row[c] = rs * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    });
    let rows = mean.len();
    let per_task = rows_per_task(cols);
    // Partial sums per fixed chunk, collected in order and added up in
    // order: a rayon `reduce` would associate them in whatever tree the
    // work-stealing produced, and training would not be bit-reproducible.
    let partials: Vec<(Vec<T>, Vec<T>)> = (0..rows.div_ceil(per_task))
        .into_par_iter()
        .map(|chunk| {
            let mut dw = vec![T::ZERO; cols];
            let mut db = vec![T::ZERO; cols];
            for row in chunk * per_task..((chunk + 1) * per_task).min(rows) {
                for c in 0..cols {
                    let i = row * cols + c;
                    let xhat = (x[i] - mean[row]) * rstd[row];
                    dw[c] += dy[i] * xhat;
                    db[c] += dy[i];
                }
            }
            (dw, db)
        })
        .collect();
    let mut dweight = vec![T::ZERO; cols];
    let mut dbias = vec![T::ZERO; cols];
    for (dw, db) in partials {
        for c in 0..cols {
            dweight[c] += dw[c];
            dbias[c] += db[c];
        }
    }
    (dx, dweight, dbias)
}

/// Column sums of x (N, C) -> (C): the bias gradient of a linear layer.
/// Chunks are summed in a fixed order so the result is reproducible.
pub fn sum_rows<T: Float>(x: &[T], cols: usize) -> Vec<T> {
    let rows = x.len() / cols.max(1);
    let per_task = rows_per_task(cols);
    let partials: Vec<Vec<T>> = (0..rows.div_ceil(per_task))
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![T::ZERO; cols];
            for row in chunk * per_task..((chunk + 1) * per_task).min(rows) {
                for (a, &v) in acc.iter_mut().zip(&x[row * cols..(row + 1) * cols]) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![T::ZERO; cols];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}
