//! Attention softmax over the key axis, with the key padding mask.
//!
//! Semantics match Hugging Face's eager attention, which adds `finfo.min` to
//! masked scores: a masked key gets probability exactly 0, unless every key
//! of the row is masked, in which case the row is uniform.
//!
//! A sliding window (ModernBERT's local layers) masks key j of query i as
//! well when |i − j| exceeds the half-width; transformers combines the two
//! masks before adding `finfo.min`, so a row that both leave empty (a
//! padding query among padding) is uniform over every key, as here.

use super::{dot, for_each_row_mut, sum};
use crate::tensor::Float;

/// Whether query `i` of a row may read key `j`: the key is real and, with a
/// window of half-width `w`, |i − j| ≤ w.
#[inline]
fn attends(mask: u8, i: usize, j: usize, window: Option<usize>) -> bool {
    mask != 0 && window.is_none_or(|w| i.abs_diff(j) <= w)
}

/// scores (B, H, Tq, Tk), key_mask (B, Tk) with 1 = real token, an optional
/// window half-width -> probs (B, H, Tq, Tk).
pub fn masked_softmax_fwd<T: Float>(scores: &[T], key_mask: &[u8], heads: usize, tq: usize, tk: usize, window: Option<usize>) -> Vec<T> {
    let mut probs = crate::tensor::pool::take::<T>(scores.len());
    for_each_row_mut(&mut probs, tk, |row, p| {
        let (b, i) = (row / (heads * tq), row % tq);
        let mask = &key_mask[b * tk..(b + 1) * tk];
        let s = &scores[row * tk..(row + 1) * tk];
        // The maximum over real keys, in lanes so the loop vectorises.
        let mut lanes = [T::MIN; 8];
        let mut any = false;
        for (j, (&v, &m)) in s.iter().zip(mask).enumerate() {
            let open = attends(m, i, j, window);
            let candidate = if open { v } else { T::MIN };
            lanes[j % 8] = lanes[j % 8].max(candidate);
            any |= open;
        }
        if !any {
            let u = T::ONE / T::from_f64(tk as f64);
            p.fill(u);
            return;
        }
        let max = lanes.iter().copied().fold(T::MIN, T::max);
        for (j, ((o, &v), &m)) in p.iter_mut().zip(s).zip(mask).enumerate() {
            let e = (v - max).exp();
            *o = if attends(m, i, j, window) { e } else { T::ZERO };
        }
        let inv = T::ONE / sum(p);
        for v in p.iter_mut() {
            *v *= inv;
        }
    });
    probs
}

/// Backward of [`masked_softmax_fwd`]: dscores = p · (dp − Σ dp·p), row by
/// row, except that a row whose keys are all masked gets 0. Its forward is
/// the constant uniform row, whatever the scores, so its true gradient is 0;
/// the plain softmax formula would return p · (dp − mean dp) instead.
/// probs, dprobs (B, H, Tq, Tk), key_mask (B, Tk), the forward's window ->
/// dscores (B, H, Tq, Tk).
pub fn masked_softmax_bwd<T: Float>(
    probs: &[T],
    dprobs: &[T],
    key_mask: &[u8],
    heads: usize,
    tq: usize,
    tk: usize,
    window: Option<usize>,
) -> Vec<T> {
    let mut ds = softmax_bwd(probs, dprobs, tk);
    for_each_row_mut(&mut ds, tk, |row, d| {
        let (b, i) = (row / (heads * tq), row % tq);
        if !key_mask[b * tk..(b + 1) * tk].iter().enumerate().any(|(j, &m)| attends(m, i, j, window)) {
            d.fill(T::ZERO);
        }
    });
    ds
}

/// dscores = p · (dp − Σ dp·p), row by row (no mask).
pub fn softmax_bwd<T: Float>(probs: &[T], dprobs: &[T], tk: usize) -> Vec<T> {
    let mut ds = crate::tensor::pool::take::<T>(probs.len());
    for_each_row_mut(&mut ds, tk, |row, d| {
        let p = &probs[row * tk..(row + 1) * tk];
        let g = &dprobs[row * tk..(row + 1) * tk];
        let dot: T = dot(p, g);
        for j in 0..tk {
            d[j] = p[j] * (g[j] - dot);
        }
    });
    ds
}
