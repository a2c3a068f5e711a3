//! Kernels that move rows without arithmetic: embedding lookups and their
//! scatter-add, the first token, head split and merge, and gathering a
//! batch's real tokens out of its padding and back.

use rayon::prelude::*;

use crate::tensor::Float;
use crate::tensor::pool::{self, Poolable};

/// Rows per rayon task: a copy this size is worth handing to another thread.
const ROWS_PER_TASK: usize = 64;

/// table (V, C), ids (S, each < V) -> (S, C).
pub fn embedding_fwd<T: Float>(table: &[T], cols: usize, ids: &[u32]) -> Vec<T> {
    let mut y = pool::take::<T>(ids.len() * cols);
    y.par_chunks_mut(cols.max(1)).zip(ids.par_iter()).for_each(|(row, &id)| {
        row.copy_from_slice(&table[id as usize * cols..(id as usize + 1) * cols]);
    });
    y
}

/// dy (S, C), ids (S) -> dtable (table_len / C, C): row by row, in id order,
/// so repeated ids accumulate the same way every run.
pub fn embedding_bwd<T: Float>(dy: &[T], cols: usize, ids: &[u32], table_len: usize) -> Vec<T> {
    let mut dt = pool::zeros::<T>(table_len);
    for (i, &id) in ids.iter().enumerate() {
        let dst = &mut dt[id as usize * cols..(id as usize + 1) * cols];
        for (a, &g) in dst.iter_mut().zip(&dy[i * cols..(i + 1) * cols]) {
            *a += g;
        }
    }
    dt
}

/// x (B, T, C) -> (B, C), row 0 of each sequence.
pub fn first_token_fwd<T: Float>(x: &[T], b: usize, t: usize, c: usize) -> Vec<T> {
    let mut y = Vec::with_capacity(b * c);
    for i in 0..b {
        y.extend_from_slice(&x[i * t * c..i * t * c + c]);
    }
    y
}

/// dy (B, C) -> dx (B, T, C), zero but for row 0 of each sequence.
pub fn first_token_bwd<T: Float>(dy: &[T], b: usize, t: usize, c: usize) -> Vec<T> {
    let mut dx = pool::zeros::<T>(b * t * c);
    for i in 0..b {
        dx[i * t * c..i * t * c + c].copy_from_slice(&dy[i * c..(i + 1) * c]);
    }
    dx
}

/// x (B, T, C), key_mask (B·T) -> (B, C): each sequence's sum over its real
/// tokens divided by their count, as transformers computes it (0 without any).
pub fn mean_pool_fwd<T: Float>(x: &[T], key_mask: &[u8], b: usize, t: usize, c: usize) -> Vec<T> {
    let mut y = pool::zeros::<T>(b * c);
    for (i, out) in y.chunks_mut(c.max(1)).enumerate().take(b) {
        let mask = &key_mask[i * t..(i + 1) * t];
        for (row, _) in mask.iter().enumerate().filter(|&(_, &m)| m != 0) {
            let at = (i * t + row) * c;
            for (o, &v) in out.iter_mut().zip(&x[at..at + c]) {
                *o += v;
            }
        }
        let count = mask.iter().filter(|&&m| m != 0).count();
        if count > 0 {
            let n = T::from_f64(count as f64);
            out.iter_mut().for_each(|o| *o = *o / n);
        }
    }
    y
}

/// dy (B, C), key_mask (B·T) -> dx (B, T, C): dy / count at each real token, 0 at padding.
pub fn mean_pool_bwd<T: Float>(dy: &[T], key_mask: &[u8], b: usize, t: usize, c: usize) -> Vec<T> {
    let mut dx = pool::zeros::<T>(b * t * c);
    for i in 0..b {
        let mask = &key_mask[i * t..(i + 1) * t];
        let count = mask.iter().filter(|&&m| m != 0).count();
        let n = T::from_f64(count.max(1) as f64);
        for (row, _) in mask.iter().enumerate().filter(|&(_, &m)| m != 0) {
            let at = (i * t + row) * c;
            for (d, &g) in dx[at..at + c].iter_mut().zip(&dy[i * c..(i + 1) * c]) {
                *d = g / n;
            }
        }
    }
    dx
}

/// (B, T, H·D) -> (B, H, T, D) when `split`, and the inverse otherwise.
pub fn permute_heads<T: Float>(x: &[T], b: usize, t: usize, h: usize, d: usize, split: bool) -> Vec<T> {
    let mut y = pool::take::<T>(x.len());
    for bi in 0..b {
        for ti in 0..t {
            for hi in 0..h {
                let merged = ((bi * t + ti) * h + hi) * d;
                let split_at = ((bi * h + hi) * t + ti) * d;
                let (src, dst) = if split { (merged, split_at) } else { (split_at, merged) };
                y[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    y
}

/// x (R, C), rows (N, each < R) -> (N, C): the rows `rows`, in that order.
pub fn gather_rows<T: Poolable + Sync>(x: &[T], cols: usize, rows: &[usize]) -> Vec<T> {
    let mut y = pool::take::<T>(rows.len() * cols);
    y.par_chunks_mut((cols * ROWS_PER_TASK).max(1)).zip(rows.par_chunks(ROWS_PER_TASK)).for_each(|(out, rows)| {
        for (o, &r) in out.chunks_mut(cols.max(1)).zip(rows) {
            o.copy_from_slice(&x[r * cols..(r + 1) * cols]);
        }
    });
    y
}

/// x (N, C), rows (N, distinct, each < total_rows) -> (total_rows, C) of
/// zeros with row rows[i] set to row i of x.
pub fn scatter_rows<T: Poolable + Sync>(x: &[T], cols: usize, rows: &[usize], total_rows: usize) -> Vec<T> {
    // Which row of x each output row takes, if any.
    let mut source = vec![usize::MAX; total_rows];
    for (i, &r) in rows.iter().enumerate() {
        source[r] = i;
    }
    let mut y = pool::take::<T>(total_rows * cols);
    y.par_chunks_mut((cols * ROWS_PER_TASK).max(1)).zip(source.par_chunks(ROWS_PER_TASK)).for_each(|(out, source)| {
        for (o, &i) in out.chunks_mut(cols.max(1)).zip(source) {
            if i == usize::MAX {
                o.fill(T::default());
            } else {
                o.copy_from_slice(&x[i * cols..(i + 1) * cols]);
            }
        }
    });
    y
}
