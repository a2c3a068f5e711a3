//! Linear layers (HF weight layout [out, in]) and matrix products.

use rayon::prelude::*;

use super::{Backward, BackwardContext, Tape, Var, on_device};
use crate::backend::cpu::matmul::{Operand, batched_matmul, matmul};
use crate::backend::cpu::norm::sum_rows;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::with_float;

// ---------- linear: y (…, out) = x (…, in) · Wᵀ + b ----------

struct Linear;
impl Backward for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, w) = (ctx.inputs[0], ctx.inputs[1]);
        let (n, k) = x.rows_cols();
        let out_features = w.shape()[0];
        with_float!(x.dtype(), "linear", |T| {
            let dy = dout.data::<T>()?;
            let mut grads = Vec::with_capacity(ctx.inputs.len());
            // dx (N, in) = dy (N, out) · W (out, in)
            grads.push(if ctx.needs_grad[0] {
                let mut dx = crate::tensor::pool::take::<T>(n * k);
                matmul(
                    Operand::new(dy, n, out_features, false),
                    Operand::new(w.data::<T>()?, out_features, k, false),
                    &mut dx,
                    false,
                    true,
                );
                Some(Tensor::from_vec(dx, x.shape())?)
            } else {
                None
            });
            // dW (out, in) = dyᵀ (out, N) · x (N, in)
            grads.push(if ctx.needs_grad[1] {
                let mut dw = crate::tensor::pool::take::<T>(out_features * k);
                matmul(Operand::new(dy, n, out_features, true), Operand::new(x.data::<T>()?, n, k, false), &mut dw, false, true);
                Some(Tensor::from_vec(dw, w.shape())?)
            } else {
                None
            });
            if ctx.inputs.len() == 3 {
                grads.push(if ctx.needs_grad[2] { Some(Tensor::from_vec(sum_rows(dy, out_features), &[out_features])?) } else { None });
            }
            Ok(grads)
        })
    }
}

/// x (…, in), weight (out, in), bias (out) -> (…, out).
pub fn linear(tape: &mut Tape, x: Var, weight: Var, bias: Option<Var>) -> Result<Var> {
    linear_with(tape, x, weight, bias, None)
}

/// As [`linear`], with an optional copy of the weight already transposed to
/// (in, out): the gemm crate runs up to 2.5× faster on it than on the HF
/// layout read through strides. Only the forward uses it.
pub fn linear_with(tape: &mut Tape, x: Var, weight: Var, bias: Option<Var>, weight_t: Option<&Tensor>) -> Result<Var> {
    let (tx, tw) = (tape.value(x), tape.value(weight));
    if tw.dims() != 2 || tx.dims() == 0 || *tx.shape().last().unwrap() != tw.shape()[1] || tx.dtype() != tw.dtype() {
        return Err(Error::shape("linear", format!("x {:?} {:?} · weight {:?} {:?}ᵀ", tx.shape(), tx.dtype(), tw.shape(), tw.dtype())));
    }
    let (n, k) = tx.rows_cols();
    let out_features = tw.shape()[0];
    let mut out_shape = tx.shape().to_vec();
    *out_shape.last_mut().unwrap() = out_features;
    if let Some(b) = bias {
        let tb = tape.value(b);
        if tb.shape() != [out_features] || tb.dtype() != tx.dtype() {
            return Err(Error::shape("linear", format!("bias {:?} for {} outputs", tb.shape(), out_features)));
        }
    }
    if tx.is_on_device() {
        return on_device::linear(tape, x, weight, bias, &out_shape);
    }
    let out = with_float!(tx.dtype(), "linear", |T| {
        let mut y = crate::tensor::pool::take::<T>(n * out_features);
        let w_operand = match weight_t {
            Some(t) if t.shape() == [k, out_features] && t.dtype() == tx.dtype() => Operand::new(t.data::<T>()?, k, out_features, false),
            _ => Operand::new(tw.data::<T>()?, out_features, k, true),
        };
        // The product overwrites y, then the bias is added in one pass: the
        // gemm crate runs about 15% slower when it has to read y back.
        matmul(Operand::new(tx.data::<T>()?, n, k, false), w_operand, &mut y, false, true);
        if let Some(b) = bias {
            let bias = tape.value(b).data::<T>()?;
            y.par_chunks_mut(out_features * 64).for_each(|rows| {
                for row in rows.chunks_mut(out_features) {
                    for (v, &bv) in row.iter_mut().zip(bias) {
                        *v += bv;
                    }
                }
            });
        }
        Tensor::from_vec(y, &out_shape)
    })?;
    let inputs: Vec<Var> = match bias {
        Some(b) => vec![x, weight, b],
        None => vec![x, weight],
    };
    Ok(tape.push(out, &inputs, Linear))
}

// ---------- batched matmul: c (…, M, N) = a' (…, M, K) · b' (…, K, N) ----------

struct BatchedMatmul {
    transpose_a: bool,
    transpose_b: bool,
}

/// (batch, rows, cols) of a tensor whose last two dims are a matrix.
fn batch_dims(t: &Tensor) -> (usize, usize, usize) {
    let s = t.shape();
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    (s[..s.len() - 2].iter().product(), r, c)
}

impl Backward for BatchedMatmul {
    fn name(&self) -> &'static str {
        "batched_matmul"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (ctx.inputs[0], ctx.inputs[1]);
        let (batch, ar, ac) = batch_dims(a);
        let (_, br, bc) = batch_dims(b);
        let (_, m, n) = batch_dims(dout);
        let (ta, tb) = (self.transpose_a, self.transpose_b);
        with_float!(a.dtype(), "batched_matmul", |T| {
            let (da_, db_, dc) = (a.data::<T>()?, b.data::<T>()?, dout.data::<T>()?);
            // With C = A'·B': dA' = dC·B'ᵀ and dB' = A'ᵀ·dC; transposing back
            // where A or B entered transposed gives the four cases below.
            let grad_a = if ctx.needs_grad[0] {
                let mut g = crate::tensor::pool::take::<T>(a.numel());
                if !ta {
                    batched_matmul(batch, dc, m, n, false, db_, br, bc, !tb, &mut g, false);
                } else {
                    batched_matmul(batch, db_, br, bc, tb, dc, m, n, true, &mut g, false);
                }
                Some(Tensor::from_vec(g, a.shape())?)
            } else {
                None
            };
            let grad_b = if ctx.needs_grad[1] {
                let mut g = crate::tensor::pool::take::<T>(b.numel());
                if !tb {
                    batched_matmul(batch, da_, ar, ac, !ta, dc, m, n, false, &mut g, false);
                } else {
                    batched_matmul(batch, dc, m, n, true, da_, ar, ac, ta, &mut g, false);
                }
                Some(Tensor::from_vec(g, b.shape())?)
            } else {
                None
            };
            Ok(vec![grad_a, grad_b])
        })
    }
}

/// a (…, M, K) (or (…, K, M) when `transpose_a`), b likewise -> (…, M, N).
/// The leading dims of a and b must be equal. A 2-D matmul is the case with no leading dims.
pub fn batched_matmul_op(tape: &mut Tape, a: Var, b: Var, transpose_a: bool, transpose_b: bool) -> Result<Var> {
    let (t_a, t_b) = (tape.value(a), tape.value(b));
    let bad = || {
        Error::shape(
            "batched_matmul",
            format!("a {:?} (transposed: {transpose_a}) · b {:?} (transposed: {transpose_b})", t_a.shape(), t_b.shape()),
        )
    };
    if t_a.dims() < 2
        || t_a.dims() != t_b.dims()
        || t_a.shape()[..t_a.dims() - 2] != t_b.shape()[..t_b.dims() - 2]
        || t_a.dtype() != t_b.dtype()
    {
        return Err(bad());
    }
    if t_a.is_on_device() {
        return Err(Error::Device("batched_matmul: not offered on a device (attention runs there as one fused op)".into()));
    }
    let (batch, ar, ac) = batch_dims(t_a);
    let (_, br, bc) = batch_dims(t_b);
    let (m, k) = if transpose_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if transpose_b { (bc, br) } else { (br, bc) };
    if k != k2 {
        return Err(bad());
    }
    let mut out_shape = t_a.shape()[..t_a.dims() - 2].to_vec();
    out_shape.extend([m, n]);
    let out = with_float!(t_a.dtype(), "batched_matmul", |T| {
        let mut c = crate::tensor::pool::take::<T>(batch * m * n);
        batched_matmul(batch, t_a.data::<T>()?, ar, ac, transpose_a, t_b.data::<T>()?, br, bc, transpose_b, &mut c, false);
        Tensor::from_vec(c, &out_shape)
    })?;
    Ok(tape.push(out, &[a, b], BatchedMatmul { transpose_a, transpose_b }))
}

/// a (M, K) · b (K, N) -> (M, N).
pub fn matmul_op(tape: &mut Tape, a: Var, b: Var) -> Result<Var> {
    if tape.value(a).dims() != 2 || tape.value(b).dims() != 2 {
        return Err(Error::shape(
            "matmul",
            format!("expected 2-D operands, got {:?} and {:?}", tape.value(a).shape(), tape.value(b).shape()),
        ));
    }
    batched_matmul_op(tape, a, b, false, false)
}
