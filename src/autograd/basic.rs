//! Element-wise ops and simple views: add, scale, reshape, GELU, tanh,
//! taking the first ([CLS]) token, and dropout.

use super::{Backward, BackwardContext, Tape, Var, on_device};
use crate::backend::cpu::activation;
use crate::error::{Error, Result};
use crate::rng;
use crate::tensor::Tensor;
use crate::with_float;

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

pub fn add(tape: &mut Tape, a: Var, b: Var) -> Result<Var> {
    let (ta, tb) = (tape.value(a), tape.value(b));
    same_shape("add", ta, tb)?;
    if ta.is_on_device() {
        return on_device::add(tape, a, b);
    }
    let out = with_float!(ta.dtype(), "add", |T| Tensor::from_vec(activation::add(ta.data::<T>()?, tb.data::<T>()?), ta.shape()))?;
    Ok(tape.push(out, &[a, b], Add))
}

// ---------- scale: x · s ----------

struct Scale(f64);
impl Backward for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let dx = with_float!(dout.dtype(), "scale", |T| Tensor::from_vec(activation::scale(dout.data::<T>()?, self.0 as T), dout.shape()))?;
        Ok(vec![Some(dx)])
    }
}

pub fn scale(tape: &mut Tape, x: Var, s: f64) -> Result<Var> {
    let t = tape.value(x);
    if t.is_on_device() {
        return on_device::scale(tape, x, s);
    }
    let out = with_float!(t.dtype(), "scale", |T| Tensor::from_vec(activation::scale(t.data::<T>()?, s as T), t.shape()))?;
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
        let dx = with_float!(x.dtype(), "gelu", |T| Tensor::from_vec(activation::gelu_bwd(x.data::<T>()?, dout.data::<T>()?), x.shape()))?;
        Ok(vec![Some(dx)])
    }
}

pub fn gelu(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.is_on_device() {
        return on_device::gelu(tape, x);
    }
    let out = with_float!(t.dtype(), "gelu", |T| Tensor::from_vec(activation::gelu_fwd(t.data::<T>()?), t.shape()))?;
    Ok(tape.push(out, &[x], Gelu))
}

// ---------- tanh ----------

struct Tanh;
impl Backward for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let y = ctx.output;
        let dx = with_float!(y.dtype(), "tanh", |T| Tensor::from_vec(activation::tanh_bwd(y.data::<T>()?, dout.data::<T>()?), y.shape()))?;
        Ok(vec![Some(dx)])
    }
}

pub fn tanh(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.is_on_device() {
        return on_device::tanh(tape, x);
    }
    let out = with_float!(t.dtype(), "tanh", |T| Tensor::from_vec(activation::tanh_fwd(t.data::<T>()?), t.shape()))?;
    Ok(tape.push(out, &[x], Tanh))
}

// ---------- first token: x (B, T, C) -> (B, C), the [CLS] row ----------

struct FirstToken;
impl Backward for FirstToken {
    fn name(&self) -> &'static str {
        "first_token"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let shape = ctx.inputs[0].shape();
        let (b, t, c) = (shape[0], shape[1], shape[2]);
        let dx = with_float!(dout.dtype(), "first_token", |T| {
            let d = dout.data::<T>()?;
            let mut dx = crate::tensor::pool::zeros::<T>(b * t * c);
            for i in 0..b {
                dx[i * t * c..i * t * c + c].copy_from_slice(&d[i * c..(i + 1) * c]);
            }
            Tensor::from_vec(dx, shape)
        })?;
        Ok(vec![Some(dx)])
    }
}

pub fn first_token(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() != 3 || t.shape()[1] == 0 {
        return Err(Error::shape("first_token", format!("expected (B, T>0, C), got {:?}", t.shape())));
    }
    if t.is_on_device() {
        return on_device::first_token(tape, x);
    }
    let (b, tl, c) = (t.shape()[0], t.shape()[1], t.shape()[2]);
    let out = with_float!(t.dtype(), "first_token", |T| {
        let x = t.data::<T>()?;
        let mut y = Vec::with_capacity(b * c);
        for i in 0..b {
            y.extend_from_slice(&x[i * tl * c..i * tl * c + c]);
        }
        Tensor::from_vec(y, &[b, c])
    })?;
    Ok(tape.push(out, &[x], FirstToken))
}

// ---------- dropout with the counter-based RNG ----------

/// Identifies one dropout site in one step: the mask is a pure function of
/// (seed, stream, element index), so it is recomputed in backward, not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub stream: u64,
}

struct Dropout {
    p: f64,
    key: DropoutKey,
}

/// Element i is dropped when its 24-bit draw is below p·2^24, so the test
/// is an integer compare; each hash covers two elements (rng::bits32).
fn dropout_apply<T: crate::tensor::Float>(x: &[T], p: f64, key: DropoutKey) -> Vec<T> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14; // even, so a chunk starts on a hash pair
    let keep_scale = T::from_f64(1.0 / (1.0 - p));
    let threshold = (p * (1u32 << 24) as f64).round() as u32;
    let stream_key = rng::stream_key(key.seed, key.stream);
    let mut y = crate::tensor::pool::take::<T>(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (y, x))| {
        let base = (c * CHUNK) as u64;
        for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
            let keep = rng::bits24(stream_key, base + i as u64) >= threshold;
            *o = if keep { v * keep_scale } else { T::ZERO };
        }
    });
    y
}

impl Backward for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let dx =
            with_float!(dout.dtype(), "dropout", |T| Tensor::from_vec(dropout_apply(dout.data::<T>()?, self.p, self.key), dout.shape()))?;
        Ok(vec![Some(dx)])
    }
}

/// Zeroes each element with probability `p` and scales the rest by 1/(1−p).
/// With `key = None` (evaluation) or p = 0 it is the identity and records nothing.
pub fn dropout(tape: &mut Tape, x: Var, p: f64, key: Option<DropoutKey>) -> Result<Var> {
    let Some(key) = key else { return Ok(x) };
    if p <= 0.0 {
        return Ok(x);
    }
    if p >= 1.0 {
        return Err(Error::InvalidArgument(format!("dropout probability {p} must be below 1")));
    }
    let t = tape.value(x);
    if t.is_on_device() {
        return on_device::dropout(tape, x, p, key.seed, key.stream);
    }
    let out = with_float!(t.dtype(), "dropout", |T| Tensor::from_vec(dropout_apply(t.data::<T>()?, p, key), t.shape()))?;
    Ok(tape.push(out, &[x], Dropout { p, key }))
}
