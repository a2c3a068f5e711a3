//! Element-wise ops and simple views: add, scale, reshape, GELU, tanh,
//! taking the first ([CLS]) token, and dropout. Each forward sits beside its
//! `Backward`; the kernels are the backend's ([`crate::backend::Backend`]).

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend;
pub use crate::backend::DropoutKey;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return Err(Error::shape(op, format!("{:?} {:?} vs {:?} {:?}", a.shape(), a.dtype(), b.shape(), b.dtype())));
    }
    Ok(())
}

// ---------- add: a (…) + b (…) ----------

struct Add;
impl Backward for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(dout.clone()), Some(dout.clone())])
    }
}

/// a (…), b (…) -> a + b (…).
pub fn add(tape: &mut Tape, a: Var, b: Var) -> Result<Var> {
    let (ta, tb) = (tape.value(a), tape.value(b));
    same_shape("add", ta, tb)?;
    let out = backend::of(ta).add(ta, tb)?;
    Ok(tape.push(out, &[a, b], Add))
}

// ---------- scale: x · s ----------

struct Scale(f64);
impl Backward for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(dout).scale(dout, self.0)?)])
    }
}

/// x (…) -> x · s (…).
pub fn scale(tape: &mut Tape, x: Var, s: f64) -> Result<Var> {
    let t = tape.value(x);
    let out = backend::of(t).scale(t, s)?;
    Ok(tape.push(out, &[x], Scale(s)))
}

// ---------- reshape (a view: the values are shared) ----------

struct Reshape;
impl Backward for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(dout.reshape(ctx.inputs[0].shape())?)])
    }
}

/// x (…) -> the same values as `shape`.
pub fn reshape(tape: &mut Tape, x: Var, shape: &[usize]) -> Result<Var> {
    let out = tape.value(x).reshape(shape)?;
    Ok(tape.push(out, &[x], Reshape))
}

// ---------- GELU (exact erf form) ----------

struct Gelu;
impl Backward for Gelu {
    fn name(&self) -> &'static str {
        "gelu"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let x = ctx.inputs[0];
        Ok(vec![Some(backend::of(x).gelu_bwd(x, dout)?)])
    }
}

/// x (…) -> x·Φ(x) (…).
pub fn gelu(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    let out = backend::of(t).gelu_fwd(t)?;
    Ok(tape.push(out, &[x], Gelu))
}

// ---------- GeGLU ----------

struct Geglu;
impl Backward for Geglu {
    fn name(&self) -> &'static str {
        "geglu"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let x = ctx.inputs[0];
        Ok(vec![Some(backend::of(x).geglu_bwd(x, dout)?)])
    }
}

/// x (…, 2I) -> GELU(x[…, :I]) · x[…, I:] (…, I): the gated feed-forward's
/// activation (ModernBERT's `Wi` output split into input and gate).
pub fn geglu(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() == 0 || !t.shape()[t.dims() - 1].is_multiple_of(2) {
        return Err(Error::shape("geglu", format!("x {:?} needs an even last dimension (input and gate halves)", t.shape())));
    }
    let out = backend::of(t).geglu_fwd(t)?;
    Ok(tape.push(out, &[x], Geglu))
}

// ---------- tanh ----------

struct Tanh;
impl Backward for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let y = ctx.output;
        Ok(vec![Some(backend::of(y).tanh_bwd(y, dout)?)])
    }
}

/// x (…) -> tanh x (…).
pub fn tanh(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    let out = backend::of(t).tanh_fwd(t)?;
    Ok(tape.push(out, &[x], Tanh))
}

// ---------- ReLU ----------

struct Relu;
impl Backward for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let y = ctx.output;
        Ok(vec![Some(backend::of(y).relu_bwd(y, dout)?)])
    }
}

/// x (…) -> max(x, 0) (…).
pub fn relu(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    let out = backend::of(t).relu_fwd(t)?;
    Ok(tape.push(out, &[x], Relu))
}

// ---------- first token: x (B, T, C) -> (B, C), the [CLS] row ----------

struct FirstToken;
impl Backward for FirstToken {
    fn name(&self) -> &'static str {
        "first_token"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(dout).first_token_bwd(dout, ctx.inputs[0].shape())?)])
    }
}

/// x (B, T, C), T > 0 -> (B, C).
pub fn first_token(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 3 || t.shape()[1] == 0 {
        return Err(Error::shape("first_token", format!("expected (B, T>0, C), got {:?}", t.shape())));
    }
    let out = backend::of(t).first_token_fwd(t)?;
    Ok(tape.push(out, &[x], FirstToken))
}

// ---------- mean pool: x (B, T, C) -> (B, C), the mean over real tokens ----------

struct MeanPool {
    key_mask: Arc<[u8]>,
}
impl Backward for MeanPool {
    fn name(&self) -> &'static str {
        "mean_pool"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(dout).mean_pool_bwd(dout, &self.key_mask, ctx.inputs[0].shape())?)])
    }
}

/// x (B, T, C), key_mask (B·T, 1 = real token) -> (B, C): each sequence's
/// mean over its real tokens (ModernBERT's pooling; 0 for one without any).
pub fn mean_pool(tape: &mut Tape, x: Var, key_mask: Arc<[u8]>) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 3 || key_mask.len() != t.shape()[0] * t.shape()[1] {
        return Err(Error::shape("mean_pool", format!("expected (B, T, C) with a (B·T) mask, got {:?} and {}", t.shape(), key_mask.len())));
    }
    let out = backend::of(t).mean_pool_fwd(t, &key_mask)?;
    Ok(tape.push(out, &[x], MeanPool { key_mask }))
}

// ---------- dropout with the counter-based RNG ----------

struct Dropout {
    p: f64,
    key: DropoutKey,
}

impl Backward for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(dout).dropout_bwd(dout, self.p, self.key)?)])
    }
}

/// x (…) -> (…): zeroes each element with probability `p` and scales the
/// rest by 1/(1−p). With `key = None` (evaluation) or p = 0 it is the
/// identity and records nothing.
pub fn dropout(tape: &mut Tape, x: Var, p: f64, key: Option<DropoutKey>) -> Result<Var> {
    let Some(key) = drawing_key(p, key)? else { return Ok(x) };
    let t = tape.value(x);
    let out = backend::of(t).dropout_fwd(t, p, key)?;
    Ok(tape.push(out, &[x], Dropout { p, key }))
}

/// Whether a dropout of probability `p` with `key` draws a mask at all
/// (not at evaluation, key None, nor at p = 0): where it does not, it is
/// the identity, and a fused inference path may stand in for it.
pub fn dropout_draws(p: f64, key: Option<DropoutKey>) -> bool {
    p > 0.0 && key.is_some()
}

/// The key a dropout of probability `p` draws with, or None where it is the
/// identity ([`dropout_draws`]); p ≥ 1 is an error.
fn drawing_key(p: f64, key: Option<DropoutKey>) -> Result<Option<DropoutKey>> {
    let Some(key) = key.filter(|_| dropout_draws(p, key)) else { return Ok(None) };
    if p >= 1.0 {
        return Err(Error::InvalidArgument(format!("dropout probability {p} must be below 1")));
    }
    Ok(Some(key))
}

struct DropoutRows {
    p: f64,
    key: DropoutKey,
    rows: Arc<[usize]>,
}

impl Backward for DropoutRows {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backend::of(dout).dropout_rows(dout, self.p, self.key, &self.rows)?)])
    }
}

/// As [`dropout`], on packed rows x (N, C) whose row r is row `rows[r]` of
/// the padded (B·T, C) layout: each element draws the mask the padded
/// dropout draws there, so packing changes no mask (only where the backend
/// packs rows: the CPU). `rows` None is [`dropout`].
pub fn dropout_rows(tape: &mut Tape, x: Var, p: f64, key: Option<DropoutKey>, rows: Option<&Arc<[usize]>>) -> Result<Var> {
    let Some(rows) = rows else { return dropout(tape, x, p, key) };
    let Some(key) = drawing_key(p, key)? else { return Ok(x) };
    let t = tape.value(x);
    let out = backend::of(t).dropout_rows(t, p, key, rows)?;
    Ok(tape.push(out, &[x], DropoutRows { p, key, rows: rows.clone() }))
}
