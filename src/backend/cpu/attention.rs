//! Attention over a padded batch as one op, composed from the CPU's pieces:
//! head split, q·kᵀ, scale, masked softmax, dropout, ·v, head merge. The
//! same arithmetic, in the same order, as those pieces recorded one by one
//! on the tape, so the fused op changes no value; it saves only what its
//! backward needs.

use super::activation::scale;
use super::dropout::dropout_apply;
use super::layout::permute_heads;
use super::matmul::batched_matmul;
use super::softmax::{masked_softmax_bwd, masked_softmax_fwd};
use crate::backend::AttentionDropout;
use crate::tensor::Float;
use crate::tensor::pool::{self, Poolable};

/// The sizes of one attention call: batch, sequence, heads, head size.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// What forward keeps for backward: the per-head q, k, v (B·H, T, D), the
/// probabilities (B·H, T, T) before and, with dropout, after it. Its
/// buffers go back to the pool when it is dropped, as a tensor's do.
pub struct AttentionSaved<T: Poolable> {
    heads_q: Vec<T>,
    heads_k: Vec<T>,
    heads_v: Vec<T>,
    probs: Vec<T>,
    dropped: Option<Vec<T>>,
    key_mask: Vec<u8>,
    dims: Dims,
    scale: f64,
    window: Option<usize>,
    dropout: Option<AttentionDropout>,
}

impl<T: Poolable> Drop for AttentionSaved<T> {
    fn drop(&mut self) {
        for buffer in [&mut self.heads_q, &mut self.heads_k, &mut self.heads_v, &mut self.probs] {
            pool::give(std::mem::take(buffer));
        }
        if let Some(dropped) = self.dropped.take() {
            pool::give(dropped);
        }
    }
}

/// q, k, v (B, T, H·D), key mask (B·T), an optional sliding-window
/// half-width (query i reads keys |i − j| ≤ w) -> context (B, T, H·D) and the saved state.
/// The intermediates go back to the pool, so the next call (the next layer)
/// reuses their memory instead of faulting in fresh pages.
pub fn attention_fwd<T: Float>(
    (q, k, v): (&[T], &[T], &[T]),
    key_mask: &[u8],
    dims: Dims,
    scale_factor: f64,
    window: Option<usize>,
    dropout: Option<AttentionDropout>,
) -> (Vec<T>, AttentionSaved<T>) {
    let Dims { batch, seq_len: t, heads: h, head_dim: d } = dims;
    let split = |x: &[T]| permute_heads(x, batch, t, h, d, true);
    let (heads_q, heads_k, heads_v) = (split(q), split(k), split(v));
    let groups = batch * h;
    let mut raw_scores = pool::take::<T>(groups * t * t);
    batched_matmul(groups, &heads_q, t, d, false, &heads_k, t, d, true, &mut raw_scores, false);
    let scores = scale(&raw_scores, T::from_f64(scale_factor));
    pool::give(raw_scores);
    let probs = masked_softmax_fwd(&scores, key_mask, h, t, t, window);
    pool::give(scores);
    let dropped = dropout.map(|drop| dropout_apply(&probs, drop.p, drop.key));
    let mut context = pool::take::<T>(groups * t * d);
    batched_matmul(groups, dropped.as_deref().unwrap_or(&probs), t, t, false, &heads_v, t, d, false, &mut context, false);
    let out = permute_heads(&context, batch, t, h, d, false);
    pool::give(context);
    let saved = AttentionSaved {
        heads_q,
        heads_k,
        heads_v,
        probs,
        dropped,
        key_mask: key_mask.to_vec(),
        dims,
        scale: scale_factor,
        window,
        dropout,
    };
    (out, saved)
}

/// The backward of context = P'·V (P' the probabilities after dropout),
/// shared with DeBERTa's attention: dout (B, T, H·D), the probabilities
/// (B·H, T, T) before and after dropout, the per-head v (B·H, T, D) ->
/// (dP, the gradient of the probabilities before dropout (B·H, T, T); dV (B·H, T, D)).
pub(super) fn context_bwd<T: Float>(
    dout: &[T],
    dims: Dims,
    (probs, dropped): (&[T], Option<&[T]>),
    heads_v: &[T],
    dropout: Option<AttentionDropout>,
) -> (Vec<T>, Vec<T>) {
    let Dims { batch, seq_len: t, heads: h, head_dim: d } = dims;
    let groups = batch * h;
    let dcontext = permute_heads(dout, batch, t, h, d, true);
    // dP' = dcontext·Vᵀ, dV = P'ᵀ·dcontext.
    let mut dprobs = pool::take::<T>(groups * t * t);
    batched_matmul(groups, &dcontext, t, d, false, heads_v, t, d, true, &mut dprobs, false);
    let mut dheads_v = pool::take::<T>(groups * t * d);
    batched_matmul(groups, dropped.unwrap_or(probs), t, t, true, &dcontext, t, d, false, &mut dheads_v, false);
    pool::give(dcontext);
    let dprobs = match dropout {
        Some(drop) => {
            let kept = dropout_apply(&dprobs, drop.p, drop.key);
            pool::give(dprobs);
            kept
        }
        None => dprobs,
    };
    (dprobs, dheads_v)
}

/// dout (B, T, H·D) -> (dq, dk, dv), each (B, T, H·D).
pub fn attention_bwd<T: Float>(saved: &AttentionSaved<T>, dout: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
    let Dims { batch, seq_len: t, heads: h, head_dim: d } = saved.dims;
    let groups = batch * h;
    let (dprobs, dheads_v) = context_bwd(dout, saved.dims, (&saved.probs, saved.dropped.as_deref()), &saved.heads_v, saved.dropout);
    let dsoftmax = masked_softmax_bwd(&saved.probs, &dprobs, &saved.key_mask, h, t, t, saved.window);
    pool::give(dprobs);
    let dscores = scale(&dsoftmax, T::from_f64(saved.scale));
    pool::give(dsoftmax);
    // scores = Q·Kᵀ: dQ = dscores·K, dK = dscoresᵀ·Q.
    let mut dheads_q = pool::take::<T>(groups * t * d);
    batched_matmul(groups, &dscores, t, t, false, &saved.heads_k, t, d, false, &mut dheads_q, false);
    let mut dheads_k = pool::take::<T>(groups * t * d);
    batched_matmul(groups, &dscores, t, t, true, &saved.heads_q, t, d, false, &mut dheads_k, false);
    pool::give(dscores);
    let merge = |x: Vec<T>| {
        let merged = permute_heads(&x, batch, t, h, d, false);
        pool::give(x);
        merged
    };
    (merge(dheads_q), merge(dheads_k), merge(dheads_v))
}
