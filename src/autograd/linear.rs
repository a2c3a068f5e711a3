//! Linear layers (HF weight layout [out, in]) and matrix products.

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// x (…, in) -> y (…, out): 2·in multiply-adds per output element.
fn linear_flops(inputs: &[&Tensor], output: &Tensor) -> f64 {
    let width = inputs.first().and_then(|x| x.shape().last().copied()).unwrap_or(0);
    2.0 * output.numel() as f64 * width as f64
}

// ---------- linear: y (…, out) = x (…, in) · Wᵀ + b ----------

/// The linear op. `bf16`: the CPU's BF16 training op (`linear_bf16`),
/// whose backward products (dx, dW) also run on BF16 operands with f32 sums.
struct Linear {
    bf16: bool,
}
impl Backward for Linear {
    fn name(&self) -> &'static str {
        if self.bf16 { "linear_bf16" } else { "linear" }
    }
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        linear_flops(inputs, output)
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, w) = (ctx.inputs[0], ctx.inputs[1]);
        let has_bias = ctx.inputs.len() == 3;
        let wanted = [ctx.needs_grad[0], ctx.needs_grad[1], has_bias && ctx.needs_grad[2]];
        let grads = match self.bf16 {
            true => backend::of(x).linear_bf16_bwd(dout, x, w, has_bias, wanted)?,
            false => backend::of(x).linear_bwd(dout, x, w, has_bias, wanted)?,
        };
        let mut out = vec![grads.input, grads.weight];
        if has_bias {
            out.push(grads.bias);
        }
        Ok(out)
    }
}

/// x (…, in), weight (out, in), bias (out) -> (…, out).
pub fn linear(tape: &mut Tape, x: Var, weight: Var, bias: Option<Var>) -> Result<Var> {
    linear_with(tape, x, weight, bias, None)
}

/// As [`linear`], with an optional copy of the weight already transposed to
/// (in, out), which the CPU's forward reads faster (model/params.rs keeps
/// them); a backend may ignore it.
pub fn linear_with(tape: &mut Tape, x: Var, weight: Var, bias: Option<Var>, weight_t: Option<&Tensor>) -> Result<Var> {
    let (tx, tw) = (tape.value(x), tape.value(weight));
    if tw.dims() != 2 || tx.dims() == 0 || *tx.shape().last().unwrap() != tw.shape()[1] || tx.dtype() != tw.dtype() {
        return Err(Error::shape("linear", format!("x {:?} {:?} · weight {:?} {:?}ᵀ", tx.shape(), tx.dtype(), tw.shape(), tw.dtype())));
    }
    let out_features = tw.shape()[0];
    let mut out_shape = tx.shape().to_vec();
    *out_shape.last_mut().unwrap() = out_features;
    let tb = bias.map(|b| tape.value(b));
    if let Some(tb) = tb
        && (tb.shape() != [out_features] || tb.dtype() != tx.dtype())
    {
        return Err(Error::shape("linear", format!("bias {:?} for {} outputs", tb.shape(), out_features)));
    }
    let out = backend::of(tx).linear_fwd(tx, tw, tb, weight_t, &out_shape)?;
    let inputs: Vec<Var> = match bias {
        Some(b) => vec![x, weight, b],
        None => vec![x, weight],
    };
    Ok(tape.push(out, &inputs, Linear { bf16: false }))
}

/// As [`linear`], with the forward product read from `packed`, the same
/// weight packed for the CPU's kernel (made from `weight`'s current value:
/// training's per-step cache). f32: the same op on the tape and the same
/// backward as [`linear`]. BF16 (`--precision bf16` on the CPU): the op
/// `linear_bf16`, whose backward products (dx and dW) also run on BF16
/// operands with f32 sums, against the f32 master weight. An INT8 weight
/// is refused: it has no gradient.
pub fn linear_from_packed(tape: &mut Tape, x: Var, weight: Var, bias: Option<Var>, packed: &backend::PackedWeight) -> Result<Var> {
    let (tx, tw) = (tape.value(x), tape.value(weight));
    let (out_features, in_features) = packed.shape();
    if matches!(packed, backend::PackedWeight::Int8(_)) {
        return Err(Error::InvalidArgument("an INT8 weight has no gradient: train on f32 weights".into()));
    }
    if tw.shape() != [out_features, in_features] || tx.dims() == 0 || *tx.shape().last().unwrap() != in_features {
        return Err(Error::shape(
            "linear",
            format!("x {:?} · weight {:?}ᵀ packed as ({out_features}, {in_features})", tx.shape(), tw.shape()),
        ));
    }
    let mut out_shape = tx.shape().to_vec();
    *out_shape.last_mut().unwrap() = out_features;
    let tb = bias.map(|b| tape.value(b));
    let out = backend::of(tx).linear_packed_fwd(tx, packed, tb, backend::LinearEpilogue::Plain, &out_shape)?;
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    let bf16 = matches!(packed, backend::PackedWeight::Bf16(_));
    Ok(tape.push(out, &inputs, Linear { bf16 }))
}

// ---------- packed linear (inference only): y (…, out) = x (…, in) · Wᵀ + b, W packed at load ----------

struct LinearPacked {
    name: &'static str,
}
impl Backward for LinearPacked {
    fn name(&self) -> &'static str {
        self.name
    }
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        linear_flops(inputs, output)
    }
    fn backward(&self, _: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Err(Error::InvalidArgument(if self.name.starts_with("linear_int8") {
            "an INT8 linear layer has no gradient: --precision int8 is for inference (train in fp32, or bf16 on a device)".into()
        } else if self.name.starts_with("linear_bf16") {
            "a BF16 linear layer of the CPU's inference cache has no gradient: --precision bf16 on the CPU is for inference (train in fp32, or bf16 on a device)".into()
        } else {
            "a linear layer on a weight packed for inference has no gradient (the inference cache is for tapes without gradients)".into()
        }))
    }
}

/// x (…, in) f32, a weight packed at load (out, in) — INT8, BF16 or f32 —,
/// bias (out) -> (…, out) f32. Only the bias is a tape input: the packed
/// weight is a constant. The op is `linear_int8`, `linear_bf16` or
/// `linear_packed` (f32) on the tape and in profiles.
pub fn linear_packed(tape: &mut Tape, x: Var, weight: &backend::PackedWeight, bias: Option<Var>) -> Result<Var> {
    linear_packed_then(tape, x, weight, bias, Then::Nothing)
}

/// As [`linear_packed`], then GELU, in the kernel's epilogue: the same values
/// as `gelu(linear_packed(…))`, without a second pass over the output.
pub fn linear_packed_gelu(tape: &mut Tape, x: Var, weight: &backend::PackedWeight, bias: Option<Var>) -> Result<Var> {
    linear_packed_then(tape, x, weight, bias, Then::Gelu)
}

/// As [`linear_packed`], plus `residual` (…, out), in the kernel's epilogue:
/// the same values as `add(linear_packed(…), residual)`, without a second
/// pass and a second output.
pub fn linear_packed_residual(tape: &mut Tape, x: Var, weight: &backend::PackedWeight, bias: Option<Var>, residual: Var) -> Result<Var> {
    linear_packed_then(tape, x, weight, bias, Then::Residual(residual))
}

/// What a packed linear op does after the bias.
enum Then {
    Nothing,
    Gelu,
    Residual(Var),
}

fn linear_packed_then(tape: &mut Tape, x: Var, weight: &backend::PackedWeight, bias: Option<Var>, then: Then) -> Result<Var> {
    let tx = tape.value(x);
    let (out_features, in_features) = weight.shape();
    // The op's name says which kernel ran: INT8, BF16 or packed f32.
    let op = match weight {
        backend::PackedWeight::Int8(_) => "linear_int8",
        backend::PackedWeight::Bf16(_) => "linear_bf16",
        backend::PackedWeight::F32(_) => "linear_packed",
    };
    if tx.dims() == 0 || *tx.shape().last().unwrap() != in_features {
        return Err(Error::shape(op, format!("x {:?} · packed weight ({out_features}, {in_features})ᵀ", tx.shape())));
    }
    let mut out_shape = tx.shape().to_vec();
    *out_shape.last_mut().unwrap() = out_features;
    let (epilogue, name, residual): (_, &'static str, _) = match (then, op) {
        (Then::Nothing, _) => (backend::LinearEpilogue::Plain, op, None),
        (Then::Gelu, "linear_int8") => (backend::LinearEpilogue::Gelu, "linear_int8_gelu", None),
        (Then::Gelu, "linear_bf16") => (backend::LinearEpilogue::Gelu, "linear_bf16_gelu", None),
        (Then::Gelu, _) => (backend::LinearEpilogue::Gelu, "linear_packed_gelu", None),
        (Then::Residual(r), "linear_int8") => (backend::LinearEpilogue::Residual(tape.value(r)), "linear_int8_residual", Some(r)),
        (Then::Residual(r), "linear_bf16") => (backend::LinearEpilogue::Residual(tape.value(r)), "linear_bf16_residual", Some(r)),
        (Then::Residual(r), _) => (backend::LinearEpilogue::Residual(tape.value(r)), "linear_packed_residual", Some(r)),
    };
    let out = backend::of(tx).linear_packed_fwd(tx, weight, bias.map(|b| tape.value(b)), epilogue, &out_shape)?;
    let mut inputs = vec![x];
    inputs.extend(bias);
    inputs.extend(residual);
    Ok(tape.push(out, &inputs, LinearPacked { name }))
}

// ---------- batched matmul: c (…, M, N) = a' (…, M, K) · b' (…, K, N) ----------

struct BatchedMatmul {
    transpose_a: bool,
    transpose_b: bool,
}

/// (rows, cols) of a tensor's last two dims.
fn matrix_dims(t: &Tensor) -> (usize, usize) {
    let s = t.shape();
    (s[s.len() - 2], s[s.len() - 1])
}

impl Backward for BatchedMatmul {
    fn name(&self) -> &'static str {
        "batched_matmul"
    }
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        // The contracted size is a's columns, or its rows when transposed.
        let (rows, cols) = inputs.first().map_or((0, 0), |a| matrix_dims(a));
        2.0 * output.numel() as f64 * if self.transpose_a { rows } else { cols } as f64
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (ctx.inputs[0], ctx.inputs[1]);
        let wanted = [ctx.needs_grad[0], ctx.needs_grad[1]];
        let (da, db) = backend::of(a).batched_matmul_bwd(dout, a, b, self.transpose_a, self.transpose_b, wanted)?;
        Ok(vec![da, db])
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
    let ((ar, ac), (br, bc)) = (matrix_dims(t_a), matrix_dims(t_b));
    let k = if transpose_a { ar } else { ac };
    let k2 = if transpose_b { bc } else { br };
    if k != k2 {
        return Err(bad());
    }
    let out = backend::of(t_a).batched_matmul(t_a, t_b, transpose_a, transpose_b)?;
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
