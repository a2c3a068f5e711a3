//! Attention pieces: head split and merge, and the masked softmax; and
//! attention over packed sequences in one op.

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::cpu::packed_attention::{packed_attention_bwd, packed_attention_fwd};
use crate::backend::cpu::softmax::{masked_softmax_bwd, masked_softmax_fwd};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use crate::with_float;

/// (B, T, H·D) -> (B, H, T, D) when `split`, and the inverse otherwise.
fn permute_heads<T: Float>(x: &[T], b: usize, t: usize, h: usize, d: usize, split: bool) -> Vec<T> {
    let mut y = crate::tensor::pool::take::<T>(x.len());
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

struct PermuteHeads {
    split: bool,
    heads: usize,
}

impl Backward for PermuteHeads {
    fn name(&self) -> &'static str {
        if self.split { "split_heads" } else { "merge_heads" }
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let x = ctx.inputs[0];
        let (b, t, h, d) = if self.split {
            (x.shape()[0], x.shape()[1], self.heads, x.shape()[2] / self.heads)
        } else {
            (x.shape()[0], x.shape()[2], x.shape()[1], x.shape()[3])
        };
        let dx = with_float!(x.dtype(), "permute_heads", |T| Tensor::from_vec(
            permute_heads(dout.data::<T>()?, b, t, h, d, !self.split),
            x.shape()
        ))?;
        Ok(vec![Some(dx)])
    }
}

/// x (B, T, H·D) -> (B, H, T, D).
pub fn split_heads(tape: &mut Tape, x: Var, heads: usize) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 3 || heads == 0 || t.shape()[2] % heads != 0 {
        return Err(Error::shape("split_heads", format!("x {:?} into {heads} heads", t.shape())));
    }
    if t.is_on_device() {
        return Err(Error::Device("split_heads: not offered on a device (attention runs there as one fused op)".into()));
    }
    let (b, tl, c) = (t.shape()[0], t.shape()[1], t.shape()[2]);
    let d = c / heads;
    let out = with_float!(t.dtype(), "split_heads", |T| Tensor::from_vec(
        permute_heads(t.data::<T>()?, b, tl, heads, d, true),
        &[b, heads, tl, d]
    ))?;
    Ok(tape.push(out, &[x], PermuteHeads { split: true, heads }))
}

/// x (B, H, T, D) -> (B, T, H·D).
pub fn merge_heads(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 4 {
        return Err(Error::shape("merge_heads", format!("expected (B, H, T, D), got {:?}", t.shape())));
    }
    let (b, h, tl, d) = (t.shape()[0], t.shape()[1], t.shape()[2], t.shape()[3]);
    let out =
        with_float!(t.dtype(), "merge_heads", |T| Tensor::from_vec(permute_heads(t.data::<T>()?, b, tl, h, d, false), &[b, tl, h * d]))?;
    Ok(tape.push(out, &[x], PermuteHeads { split: false, heads: h }))
}

/// Keeps the key mask (B·Tk): a row whose keys are all masked is constant in
/// forward, so backward must give it a zero gradient.
struct MaskedSoftmax {
    key_mask: Vec<u8>,
}

impl Backward for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked_softmax"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let p = ctx.output;
        let (h, tq, tk) = (p.shape()[1], p.shape()[2], p.shape()[3]);
        let ds = with_float!(p.dtype(), "masked_softmax", |T| {
            Tensor::from_vec(masked_softmax_bwd(p.data::<T>()?, dout.data::<T>()?, &self.key_mask, h, tq, tk), p.shape())
        })?;
        Ok(vec![Some(ds)])
    }
}

/// scores (B, H, Tq, Tk), key_mask (B·Tk, 1 = attend) -> probabilities over keys.
pub fn masked_softmax(tape: &mut Tape, scores: Var, key_mask: &[u8]) -> Result<Var> {
    let t = tape.value(scores);
    if t.dims() != 4 || key_mask.len() != t.shape()[0] * t.shape()[3] {
        return Err(Error::shape("masked_softmax", format!("scores {:?} with a mask of {} entries", t.shape(), key_mask.len())));
    }
    let (h, tq, tk) = (t.shape()[1], t.shape()[2], t.shape()[3]);
    let out =
        with_float!(t.dtype(), "masked_softmax", |T| Tensor::from_vec(masked_softmax_fwd(t.data::<T>()?, key_mask, h, tq, tk), t.shape()))?;
    Ok(tape.push(out, &[scores], MaskedSoftmax { key_mask: key_mask.to_vec() }))
}

struct PackedAttention {
    lens: Arc<[usize]>,
    heads: usize,
    scale: f64,
}

impl Backward for PackedAttention {
    fn name(&self) -> &'static str {
        "packed_attention"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (q, k, v) = (ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]);
        with_float!(dout.dtype(), "packed_attention", |T| {
            let (dq, dk, dv) =
                packed_attention_bwd(q.data::<T>()?, k.data::<T>()?, v.data::<T>()?, dout.data::<T>()?, &self.lens, self.heads, self.scale);
            Ok(vec![Some(Tensor::from_vec(dq, q.shape())?), Some(Tensor::from_vec(dk, k.shape())?), Some(Tensor::from_vec(dv, v.shape())?)])
        })
    }
}

/// q, k, v (N, heads·D), holding sequences of `lens` rows back to back ->
/// context (N, heads·D): each sequence attends to its own rows only, with
/// scores scaled by `scale`. The same function as split_heads, scores,
/// scale, masked_softmax, context and merge_heads on the padded batch, at
/// every real position, without computing any padding. No dropout; CPU only.
pub fn packed_attention(tape: &mut Tape, q: Var, k: Var, v: Var, lens: Arc<[usize]>, heads: usize, scale: f64) -> Result<Var> {
    let (tq, tk, tv) = (tape.value(q), tape.value(k), tape.value(v));
    let rows: usize = lens.iter().sum();
    let fits = |t: &Tensor| t.dims() == 2 && t.shape() == tq.shape() && t.dtype() == tq.dtype();
    if !(fits(tk) && fits(tv)) || tq.dims() != 2 || tq.shape()[0] != rows || heads == 0 || tq.shape()[1] % heads != 0 {
        return Err(Error::shape(
            "packed_attention",
            format!("q {:?}, k {:?}, v {:?} for sequences of {rows} rows in all and {heads} heads", tq.shape(), tk.shape(), tv.shape()),
        ));
    }
    if tq.is_on_device() {
        return Err(Error::InvalidArgument("packed_attention runs on the CPU only".into()));
    }
    let out = with_float!(tq.dtype(), "packed_attention", |T| Tensor::from_vec(
        packed_attention_fwd(tq.data::<T>()?, tk.data::<T>()?, tv.data::<T>()?, &lens, heads, scale),
        tq.shape()
    ))?;
    Ok(tape.push(out, &[q, k, v], PackedAttention { lens, heads, scale }))
}
