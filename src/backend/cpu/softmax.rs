//! Attention softmax over the key axis, with the key padding mask.
//!
//! Semantics match Hugging Face's eager attention, which adds `finfo.min` to
//! masked scores: a masked key gets probability exactly 0, unless every key
//! of the row is masked, in which case the row is uniform.

use super::for_each_row_mut;
use crate::tensor::Float;

/// scores (B, H, Tq, Tk), key_mask (B, Tk) with 1 = real token -> probs (B, H, Tq, Tk).
pub fn masked_softmax_fwd<T: Float>(scores: &[T], key_mask: &[u8], heads: usize, tq: usize, tk: usize) -> Vec<T> {
    let mut probs = vec![T::ZERO; scores.len()];
    for_each_row_mut(&mut probs, tk, |row, p| {
        let b = row / (heads * tq);
        let mask = &key_mask[b * tk..(b + 1) * tk];
        let s = &scores[row * tk..(row + 1) * tk];
        let mut max = T::MIN;
        let mut any = false;
        for j in 0..tk {
            if mask[j] != 0 {
                max = max.max(s[j]);
                any = true;
            }
        }
        if !any {
            let u = T::ONE / T::from_f64(tk as f64);
            p.fill(u);
            return;
        }
        let mut sum = T::ZERO;
        for j in 0..tk {
            p[j] = if mask[j] != 0 { (s[j] - max).exp() } else { T::ZERO };
            sum += p[j];
        }
        let inv = T::ONE / sum;
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
/// probs, dprobs (B, H, Tq, Tk), key_mask (B, Tk) -> dscores (B, H, Tq, Tk).
pub fn masked_softmax_bwd<T: Float>(probs: &[T], dprobs: &[T], key_mask: &[u8], heads: usize, tq: usize, tk: usize) -> Vec<T> {
    let mut ds = softmax_bwd(probs, dprobs, tk);
    for_each_row_mut(&mut ds, tk, |row, d| {
        let b = row / (heads * tq);
        if key_mask[b * tk..(b + 1) * tk].iter().all(|&m| m == 0) {
            d.fill(T::ZERO);
        }
    });
    ds
}

/// dscores = p · (dp − Σ dp·p), row by row (no mask).
pub fn softmax_bwd<T: Float>(probs: &[T], dprobs: &[T], tk: usize) -> Vec<T> {
    let mut ds = vec![T::ZERO; probs.len()];
    for_each_row_mut(&mut ds, tk, |row, d| {
        let p = &probs[row * tk..(row + 1) * tk];
        let g = &dprobs[row * tk..(row + 1) * tk];
        let dot: T = p.iter().zip(g).map(|(&a, &b)| a * b).sum();
        for j in 0..tk {
            d[j] = p[j] * (g[j] - dot);
        }
    });
    ds
}
