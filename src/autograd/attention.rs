//! Attention: the whole of it as one op ([`attention`], on every backend),
//! attention over packed sequences ([`packed_attention`]), and the pieces
//! the CPU composes it from (head split and merge, the masked softmax),
//! which the gradient checks test one by one.

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, AttentionDropout, DropoutKey, PackedAttentionMode, PackedDropout, Saved};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

// ---------- attention: q, k, v (B, T, H·D) -> context (B, T, H·D) ----------

struct Attention {
    saved: Saved,
}

impl Backward for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        // q (B, T, C): Q·Kᵀ and P·V, 2·T·C multiply-adds per query row each (masked keys included).
        let t = inputs.first().map_or(0, |q| q.shape().get(1).copied().unwrap_or(0));
        4.0 * output.numel() as f64 * t as f64
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let qkv = [ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]];
        let grads = backend::of(qkv[0]).attention_bwd(qkv, ctx.output, &self.saved, dout)?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

/// q, k, v (B, T, H·D), key mask (B·T, 1 = attend) -> context (B, T, H·D):
/// softmax(q·kᵀ·scale, masked) with dropout (p, site) on the probabilities,
/// times v, per head. On a device one flash kernel, without materialising
/// the (B, H, T, T) scores; on the CPU the pieces below, in one op.
pub fn attention(
    tape: &mut Tape,
    qkv: (Var, Var, Var),
    key_mask: &[u8],
    heads: usize,
    scale: f64,
    dropout: Option<(f64, DropoutKey)>,
) -> Result<Var> {
    windowed_attention(tape, qkv, key_mask, heads, scale, None, dropout)
}

/// As [`attention`], with an optional sliding window: query i reads key j
/// only if |i − j| ≤ `window` (ModernBERT's local layers, half-width
/// `local_attention / 2`). A row the window and the mask leave empty (a
/// padding query) is uniform, as in transformers.
pub fn windowed_attention(
    tape: &mut Tape,
    (q, k, v): (Var, Var, Var),
    key_mask: &[u8],
    heads: usize,
    scale: f64,
    window: Option<usize>,
    dropout: Option<(f64, DropoutKey)>,
) -> Result<Var> {
    let tq = tape.value(q);
    if tq.dims() != 3 || heads == 0 || tq.shape()[2] % heads != 0 || key_mask.len() != tq.shape()[0] * tq.shape()[1] {
        return Err(Error::shape("attention", format!("q {:?} into {heads} heads with {} mask entries", tq.shape(), key_mask.len())));
    }
    for other in [k, v] {
        let t = tape.value(other);
        if t.shape() != tq.shape() || t.dtype() != tq.dtype() {
            return Err(Error::shape("attention", format!("q {:?} vs {:?}", tq.shape(), t.shape())));
        }
    }
    if let Some((p, _)) = dropout
        && p >= 1.0
    {
        return Err(Error::InvalidArgument(format!("dropout probability {p} must be below 1")));
    }
    let dropout = dropout.filter(|&(p, _)| p > 0.0).map(|(p, key)| AttentionDropout { p, key });
    let qkv = [tq, tape.value(k), tape.value(v)];
    let (out, saved) = backend::of(tq).attention_fwd(qkv, key_mask, heads, scale, window, dropout)?;
    Ok(tape.push(out, &[q, k, v], Attention { saved }))
}

// ---------- head split and merge ----------

struct PermuteHeads {
    split: bool,
    heads: usize,
}

impl Backward for PermuteHeads {
    fn name(&self) -> &'static str {
        if self.split { "split_heads" } else { "merge_heads" }
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(dout).permute_heads(dout, self.heads, !self.split)?)])
    }
}

/// x (B, T, H·D) -> (B, H, T, D).
pub fn split_heads(tape: &mut Tape, x: Var, heads: usize) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 3 || heads == 0 || t.shape()[2] % heads != 0 {
        return Err(Error::shape("split_heads", format!("x {:?} into {heads} heads", t.shape())));
    }
    let out = backend::of(t).permute_heads(t, heads, true)?;
    Ok(tape.push(out, &[x], PermuteHeads { split: true, heads }))
}

/// x (B, H, T, D) -> (B, T, H·D).
pub fn merge_heads(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 4 {
        return Err(Error::shape("merge_heads", format!("expected (B, H, T, D), got {:?}", t.shape())));
    }
    let heads = t.shape()[1];
    let out = backend::of(t).permute_heads(t, heads, false)?;
    Ok(tape.push(out, &[x], PermuteHeads { split: false, heads }))
}

// ---------- masked softmax ----------

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
        Ok(vec![Some(backend::of(p).masked_softmax_bwd(p, dout, &self.key_mask)?)])
    }
}

/// scores (B, H, Tq, Tk), key_mask (B·Tk, 1 = attend) -> probabilities over keys.
pub fn masked_softmax(tape: &mut Tape, scores: Var, key_mask: &[u8]) -> Result<Var> {
    let t = tape.value(scores);
    if t.dims() != 4 || key_mask.len() != t.shape()[0] * t.shape()[3] {
        return Err(Error::shape("masked_softmax", format!("scores {:?} with a mask of {} entries", t.shape(), key_mask.len())));
    }
    let out = backend::of(t).masked_softmax_fwd(t, key_mask)?;
    Ok(tape.push(out, &[scores], MaskedSoftmax { key_mask: key_mask.to_vec() }))
}

// ---------- attention over packed sequences ----------

struct PackedAttention {
    lens: Arc<[usize]>,
    heads: usize,
    scale: f64,
    mode: PackedAttentionMode,
}

impl Backward for PackedAttention {
    fn name(&self) -> &'static str {
        "packed_attention"
    }
    fn forward_flops(&self, _: &[&Tensor], output: &Tensor) -> f64 {
        // Each sequence's rows attend to its own keys only: 4·len²·C per
        // sequence (all of them computed, the window's cut keys included).
        let width = output.shape().last().copied().unwrap_or(0) as f64;
        self.lens.iter().map(|&l| 4.0 * (l as f64) * (l as f64) * width).sum()
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let qkv = [ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]];
        let grads = backend::of(dout).packed_attention_bwd(qkv, dout, &self.lens, self.heads, self.scale, self.mode)?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

/// q, k, v (N, heads·D), holding sequences of `lens` rows back to back ->
/// context (N, heads·D): each sequence attends to its own rows only, with
/// scores scaled by `scale`. The same function as [`attention`] on the
/// padded batch, at every real position, without computing any padding.
/// No dropout; only where the backend packs rows (the CPU).
pub fn packed_attention(tape: &mut Tape, q: Var, k: Var, v: Var, lens: Arc<[usize]>, heads: usize, scale: f64) -> Result<Var> {
    packed_windowed_attention(tape, (q, k, v), lens, heads, scale, None)
}

/// As [`packed_attention`], with an optional sliding window of half-width
/// `window` within each sequence (see [`windowed_attention`]).
pub fn packed_windowed_attention(
    tape: &mut Tape,
    qkv: (Var, Var, Var),
    lens: Arc<[usize]>,
    heads: usize,
    scale: f64,
    window: Option<usize>,
) -> Result<Var> {
    packed_attention_in(tape, qkv, lens, heads, scale, PackedAttentionMode { window, dropout: None })
}

/// As [`packed_windowed_attention`], with `mode`'s window and dropout on
/// the probabilities, drawn as the padded layout draws them (sequence s is
/// batch row s of a batch padded to `padded_len`; see [`PackedDropout`]),
/// so a packed training step equals the padded one.
///
/// [`PackedDropout`]: crate::backend::PackedDropout
pub fn packed_attention_in(
    tape: &mut Tape,
    (q, k, v): (Var, Var, Var),
    lens: Arc<[usize]>,
    heads: usize,
    scale: f64,
    mode: PackedAttentionMode,
) -> Result<Var> {
    let (tq, tk, tv) = (tape.value(q), tape.value(k), tape.value(v));
    let rows: usize = lens.iter().sum();
    let fits = |t: &Tensor| t.dims() == 2 && t.shape() == tq.shape() && t.dtype() == tq.dtype();
    if !(fits(tk) && fits(tv)) || tq.dims() != 2 || tq.shape()[0] != rows || heads == 0 || tq.shape()[1] % heads != 0 {
        return Err(Error::shape(
            "packed_attention",
            format!("q {:?}, k {:?}, v {:?} for sequences of {rows} rows in all and {heads} heads", tq.shape(), tk.shape(), tv.shape()),
        ));
    }
    if let Some(drop) = mode.dropout
        && lens.iter().any(|&l| l > drop.padded_len)
    {
        return Err(Error::shape(
            "packed_attention",
            format!("a sequence longer than the padded length {} its dropout is keyed by", drop.padded_len),
        ));
    }
    let out = backend::of(tq).packed_attention_fwd([tq, tk, tv], &lens, heads, scale, mode)?;
    Ok(tape.push(out, &[q, k, v], PackedAttention { lens, heads, scale, mode }))
}

// ---------- packed attention on one fused q|k|v projection (inference) ----------

struct PackedAttentionQkv {
    lens: Arc<[usize]>,
}

impl Backward for PackedAttentionQkv {
    fn name(&self) -> &'static str {
        "packed_attention_qkv"
    }
    fn forward_flops(&self, _: &[&Tensor], output: &Tensor) -> f64 {
        let width = output.shape().last().copied().unwrap_or(0) as f64;
        self.lens.iter().map(|&l| 4.0 * (l as f64) * (l as f64) * width).sum()
    }
    fn backward(&self, _: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Err(Error::InvalidArgument(
            "attention on a fused q|k|v projection is for inference only; training projects q, k and v apart".into(),
        ))
    }
}

/// qkv (N, 3·heads·D): q, k and v side by side, each row one token, holding
/// sequences of `lens` rows back to back -> context (N, heads·D), as
/// [`packed_attention`] on the three. For a tape without gradients (the
/// CPU's inference, where one projection makes all three).
pub fn packed_attention_qkv(tape: &mut Tape, qkv: Var, lens: Arc<[usize]>, heads: usize, scale: f64) -> Result<Var> {
    let t = tape.value(qkv);
    let rows: usize = lens.iter().sum();
    if tape.grad_enabled() {
        return Err(Error::InvalidArgument("attention on a fused q|k|v projection runs on a tape without gradients only".into()));
    }
    if t.dims() != 2 || t.shape()[0] != rows || heads == 0 || t.shape()[1] % (3 * heads) != 0 {
        return Err(Error::shape(
            "packed_attention_qkv",
            format!("qkv {:?} for sequences of {rows} rows in all and {heads} heads", t.shape()),
        ));
    }
    let out = backend::of(t).packed_attention_qkv_fwd(t, &lens, heads, scale)?;
    Ok(tape.push(out, &[qkv], PackedAttentionQkv { lens }))
}

// ---------- DeBERTa's disentangled attention ----------

struct RelativeAttention {
    saved: Saved,
}

impl Backward for RelativeAttention {
    fn name(&self) -> &'static str {
        "relative_attention"
    }
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        // Q·Kᵀ and P·V as in attention, plus q·pkᵀ and k·pqᵀ: 2·R·C each per row.
        let t = inputs.first().map_or(0, |q| q.shape().get(1).copied().unwrap_or(0)) as f64;
        let r = inputs.get(3).map_or(0, |pq| pq.shape()[0]) as f64;
        output.numel() as f64 * (4.0 * t + 4.0 * r)
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let grads = backend::of(dout).relative_attention_bwd(ctx.inputs[0], ctx.inputs[3], &self.saved, dout)?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

/// DeBERTa's disentangled self-attention: q, k, v (B, T, H·D), the
/// relative embeddings projected by the layer's query and key projections,
/// pq and pk (R, H·D), the key mask (B·T), and `rows` (2T − 1), the table
/// row each query − key distance reads, from −(T−1) up -> context (B, T, H·D).
/// Scores are (q_i·k_j + q_i·pk[row] + k_j·pq[row])·scale; the mask is
/// query × key, so a padding query is uniform over all T keys, as in
/// transformers. Dropout (p, site) falls on the probabilities.
#[allow(clippy::too_many_arguments)]
pub fn relative_attention(
    tape: &mut Tape,
    (q, k, v): (Var, Var, Var),
    (pq, pk): (Var, Var),
    key_mask: &[u8],
    rows: &[u32],
    heads: usize,
    scale: f64,
    dropout: Option<(f64, DropoutKey)>,
) -> Result<Var> {
    let tq = tape.value(q);
    let shape = tq.shape().to_vec();
    if tq.dims() != 3 || heads == 0 || shape[2] % heads != 0 || key_mask.len() != shape[0] * shape[1] {
        return Err(Error::shape("relative_attention", format!("q {shape:?} into {heads} heads with {} mask entries", key_mask.len())));
    }
    for other in [k, v] {
        let t = tape.value(other);
        if t.shape() != tq.shape() || t.dtype() != tq.dtype() {
            return Err(Error::shape("relative_attention", format!("q {shape:?} vs {:?}", t.shape())));
        }
    }
    let (tpq, tpk) = (tape.value(pq), tape.value(pk));
    let positions = tpq.shape().first().copied().unwrap_or(0);
    let table_fits = |t: &Tensor| t.dims() == 2 && t.shape() == [positions, shape[2]] && t.dtype() == tq.dtype();
    if positions == 0 || !table_fits(tpq) || !table_fits(tpk) {
        return Err(Error::shape("relative_attention", format!("pq {:?}, pk {:?} for q {shape:?}", tpq.shape(), tpk.shape())));
    }
    if rows.len() != (2 * shape[1]).saturating_sub(1) || rows.iter().any(|&r| r as usize >= positions) {
        return Err(Error::shape(
            "relative_attention",
            format!("{} distance rows (need {}) reading tables of {positions} rows", rows.len(), (2 * shape[1]).saturating_sub(1)),
        ));
    }
    if let Some((p, _)) = dropout
        && p >= 1.0
    {
        return Err(Error::InvalidArgument(format!("dropout probability {p} must be below 1")));
    }
    let dropout = dropout.filter(|&(p, _)| p > 0.0).map(|(p, key)| AttentionDropout { p, key });
    let qkv = [tq, tape.value(k), tape.value(v)];
    let (out, saved) = backend::of(tq).relative_attention_fwd(qkv, [tpq, tpk], key_mask, rows, heads, scale, dropout)?;
    Ok(tape.push(out, &[q, k, v, pq, pk], RelativeAttention { saved }))
}

struct PackedRelativeAttention {
    lens: Arc<[usize]>,
    rows: Arc<[u32]>,
    heads: usize,
    scale: f64,
    dropout: Option<PackedDropout>,
}

impl Backward for PackedRelativeAttention {
    fn name(&self) -> &'static str {
        "packed_relative_attention"
    }
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        // Per sequence: 4·len²·C for the content products, 4·len·R·C for the relative ones.
        let width = output.shape().last().copied().unwrap_or(0) as f64;
        let r = inputs.get(3).map_or(0, |pq| pq.shape()[0]) as f64;
        self.lens.iter().map(|&l| 4.0 * (l as f64) * (l as f64 + r) * width).sum()
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let qkv = [ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]];
        let tables = [ctx.inputs[3], ctx.inputs[4]];
        let grads = backend::of(dout).packed_relative_attention_bwd(
            qkv,
            tables,
            dout,
            &self.lens,
            &self.rows,
            self.heads,
            self.scale,
            self.dropout,
        )?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

/// As [`relative_attention`] over packed sequences: q, k, v (N, H·D)
/// holding sequences of `lens` rows back to back, pq, pk (R, H·D), `rows`
/// (2·T − 1 for a T at least every length) -> context (N, H·D), each
/// sequence attending to its own rows; probability dropout drawn as the
/// padded layout draws it (a [`PackedDropout`] whose `padded_len` is that
/// T). Only where the backend packs rows (the CPU).
#[allow(clippy::too_many_arguments)]
pub fn packed_relative_attention(
    tape: &mut Tape,
    (q, k, v): (Var, Var, Var),
    (pq, pk): (Var, Var),
    lens: Arc<[usize]>,
    rows: Arc<[u32]>,
    heads: usize,
    scale: f64,
    dropout: Option<PackedDropout>,
) -> Result<Var> {
    let (tq, tk, tv) = (tape.value(q), tape.value(k), tape.value(v));
    let n: usize = lens.iter().sum();
    let fits = |t: &Tensor| t.dims() == 2 && t.shape() == tq.shape() && t.dtype() == tq.dtype();
    if !(fits(tk) && fits(tv)) || tq.dims() != 2 || tq.shape()[0] != n || heads == 0 || tq.shape()[1] % heads != 0 {
        return Err(Error::shape("packed_relative_attention", format!("q {:?} for sequences of {n} rows and {heads} heads", tq.shape())));
    }
    let (tpq, tpk) = (tape.value(pq), tape.value(pk));
    let positions = tpq.shape().first().copied().unwrap_or(0);
    let table_fits = |t: &Tensor| t.dims() == 2 && t.shape() == [positions, tq.shape()[1]] && t.dtype() == tq.dtype();
    let longest = lens.iter().copied().max().unwrap_or(0);
    let reach = rows.len().div_ceil(2);
    if positions == 0 || !table_fits(tpq) || !table_fits(tpk) || rows.len() % 2 == 0 || reach < longest {
        return Err(Error::shape(
            "packed_relative_attention",
            format!("pq {:?}, pk {:?}, {} distance rows for sequences up to {longest}", tpq.shape(), tpk.shape(), rows.len()),
        ));
    }
    if rows.iter().any(|&r| r as usize >= positions) {
        return Err(Error::shape("packed_relative_attention", format!("a distance row beyond the tables' {positions} rows")));
    }
    if dropout.is_some_and(|drop| drop.padded_len != reach) {
        return Err(Error::shape("packed_relative_attention", format!("dropout keyed by a padded length other than the rows' {reach}")));
    }
    let out = backend::of(tq).packed_relative_attention_fwd([tq, tk, tv], [tpq, tpk], &lens, &rows, heads, scale, dropout)?;
    Ok(tape.push(out, &[q, k, v, pq, pk], PackedRelativeAttention { lens, rows, heads, scale, dropout }))
}
