//! The tape's ops on a CUDA device (real or simulated). Each public op in
//! basic.rs, linear.rs, norm.rs and loss.rs checks whether its input lives
//! on a device and, if so, comes here; the model code is written once.
//!
//! Conventions (DESIGN.md, Decision 4):
//! - activations and their gradients are in the model's working type T
//!   (F32, or BF16 under mixed precision);
//! - parameter gradients are always F32, whatever T is: the weight-gradient
//!   GEMMs, LayerNorm and embedding backward write F32;
//! - losses are F32 scalars.
//!
//! Two ops exist only here, because on a device they are single fused
//! kernels: the embeddings with their LayerNorm, and flash attention. The
//! CPU runs the same computation as a sequence of smaller ops (bert.rs).

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::cuda::ops::attention::{AttentionDims, AttentionDropout, attention_bwd, attention_fwd};
use crate::backend::cuda::ops::dropout::{DropoutParams, dropout_bwd, dropout_fwd};
use crate::backend::cuda::ops::{elementwise, embedding, gelu, gemm, layernorm, loss};
use crate::device::{DeviceBuffer, Elem};
use crate::error::{Error, Result};
use crate::rng;
use crate::tensor::Tensor;

/// The device buffer of a device tensor, or an error naming the op.
pub(crate) fn buf<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a DeviceBuffer> {
    t.device_buffer().ok_or_else(|| Error::Device(format!("{op}: mixes CPU and device tensors")))
}

/// An uninitialised buffer on the same device as `like`.
fn alloc(like: &DeviceBuffer, len: usize, elem: Elem) -> Result<DeviceBuffer> {
    DeviceBuffer::uninit(like.device(), len, elem)
}

fn zeros(like: &DeviceBuffer, len: usize, elem: Elem) -> Result<DeviceBuffer> {
    DeviceBuffer::zeros(like.device(), len, elem)
}

/// acc + grad into a new buffer. Out of place on purpose: a gradient may be
/// shared by several tape slots (add's backward hands the same tensor to
/// both inputs), so adding in place would corrupt the others.
pub(crate) fn accumulate(acc: &mut Tensor, grad: &Tensor) -> Result<()> {
    let (a, g) = (buf("accumulate", acc)?, buf("accumulate", grad)?);
    let out = alloc(a, a.len(), a.elem())?;
    out.copy_from(a)?;
    elementwise::add_assign(&out, g)?;
    *acc = Tensor::from_device(out, acc.shape())?;
    Ok(())
}

// ---------- linear: y (N, out) = x (N, in) · wᵀ + b through cuBLASLt ----------

struct Linear {
    rows: usize,
}

impl Backward for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, w) = (buf("linear", ctx.inputs[0])?, buf("linear", ctx.inputs[1])?);
        let dy = buf("linear", dout)?;
        let mut grads = Vec::with_capacity(ctx.inputs.len());
        grads.push(if ctx.needs_grad[0] {
            let dx = alloc(x, x.len(), x.elem())?;
            gemm::linear_bwd_input(dy, w, &dx, self.rows, false)?;
            Some(Tensor::from_device(dx, ctx.inputs[0].shape())?)
        } else {
            None
        });
        let want_w = ctx.needs_grad[1];
        let want_b = ctx.inputs.len() == 3 && ctx.needs_grad[2];
        if want_w || want_b {
            let dw = alloc(w, w.len(), Elem::F32)?;
            let db = if ctx.inputs.len() == 3 { Some(alloc(w, ctx.inputs[2].numel(), Elem::F32)?) } else { None };
            gemm::linear_bwd_weight(dy, x, &dw, db.as_ref(), self.rows, false)?;
            grads.push(if want_w { Some(Tensor::from_device(dw, ctx.inputs[1].shape())?) } else { None });
            if let Some(db) = db {
                grads.push(if want_b { Some(Tensor::from_device(db, ctx.inputs[2].shape())?) } else { None });
            }
        } else {
            grads.push(None);
            if ctx.inputs.len() == 3 {
                grads.push(None);
            }
        }
        Ok(grads)
    }
}

pub(crate) fn linear(tape: &mut Tape, x: Var, weight: Var, bias: Option<Var>, out_shape: &[usize]) -> Result<Var> {
    let (tx, tw) = (tape.value(x), tape.value(weight));
    let (rows, _) = tx.rows_cols();
    let (xb, wb) = (buf("linear", tx)?, buf("linear", tw)?);
    let y = alloc(xb, rows * tw.shape()[0], xb.elem())?;
    let bias_buf = match bias {
        Some(b) => Some(buf("linear", tape.value(b))?),
        None => None,
    };
    gemm::linear_fwd(xb, wb, bias_buf, &y, rows)?;
    let out = Tensor::from_device(y, out_shape)?;
    let inputs: Vec<Var> = match bias {
        Some(b) => vec![x, weight, b],
        None => vec![x, weight],
    };
    Ok(tape.push(out, &inputs, Linear { rows }))
}

// ---------- element-wise: add, scale, gelu, tanh, first token ----------

struct Add;
impl Backward for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(dout.clone()), Some(dout.clone())])
    }
}

pub(crate) fn add(tape: &mut Tape, a: Var, b: Var) -> Result<Var> {
    let (ta, tb) = (tape.value(a), tape.value(b));
    let (ab, bb) = (buf("add", ta)?, buf("add", tb)?);
    let out = alloc(ab, ab.len(), ab.elem())?;
    elementwise::add(ab, bb, &out)?;
    let out = Tensor::from_device(out, ta.shape())?;
    Ok(tape.push(out, &[a, b], Add))
}

struct Scale(f32);
impl Backward for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let d = buf("scale", dout)?;
        let dx = alloc(d, d.len(), d.elem())?;
        elementwise::scale(d, &dx, self.0)?;
        Ok(vec![Some(Tensor::from_device(dx, dout.shape())?)])
    }
}

pub(crate) fn scale(tape: &mut Tape, x: Var, s: f64) -> Result<Var> {
    let t = tape.value(x);
    let xb = buf("scale", t)?;
    let y = alloc(xb, xb.len(), xb.elem())?;
    elementwise::scale(xb, &y, s as f32)?;
    let out = Tensor::from_device(y, t.shape())?;
    Ok(tape.push(out, &[x], Scale(s as f32)))
}

struct Gelu;
impl Backward for Gelu {
    fn name(&self) -> &'static str {
        "gelu"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, d) = (buf("gelu", ctx.inputs[0])?, buf("gelu", dout)?);
        let dx = alloc(x, x.len(), x.elem())?;
        gelu::gelu_bwd(x, d, &dx)?;
        Ok(vec![Some(Tensor::from_device(dx, dout.shape())?)])
    }
}

pub(crate) fn gelu(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    let xb = buf("gelu", t)?;
    let y = alloc(xb, xb.len(), xb.elem())?;
    gelu::gelu_fwd(xb, &y)?;
    let out = Tensor::from_device(y, t.shape())?;
    Ok(tape.push(out, &[x], Gelu))
}

struct Tanh;
impl Backward for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (y, d) = (buf("tanh", ctx.output)?, buf("tanh", dout)?);
        let dx = alloc(y, y.len(), y.elem())?;
        elementwise::tanh_bwd(y, d, &dx)?;
        Ok(vec![Some(Tensor::from_device(dx, dout.shape())?)])
    }
}

pub(crate) fn tanh(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    let xb = buf("tanh", t)?;
    let y = alloc(xb, xb.len(), xb.elem())?;
    elementwise::tanh_fwd(xb, &y)?;
    let out = Tensor::from_device(y, t.shape())?;
    Ok(tape.push(out, &[x], Tanh))
}

struct FirstToken;
impl Backward for FirstToken {
    fn name(&self) -> &'static str {
        "first_token"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let shape = ctx.inputs[0].shape();
        let d = buf("first_token", dout)?;
        let dx = alloc(d, shape.iter().product(), d.elem())?;
        elementwise::first_token_bwd(d, &dx, shape[0], shape[1], shape[2])?;
        Ok(vec![Some(Tensor::from_device(dx, shape)?)])
    }
}

pub(crate) fn first_token(tape: &mut Tape, x: Var) -> Result<Var> {
    let t = tape.value(x);
    let (b, tl, c) = (t.shape()[0], t.shape()[1], t.shape()[2]);
    let xb = buf("first_token", t)?;
    let y = alloc(xb, b * c, xb.elem())?;
    elementwise::first_token_fwd(xb, &y, b, tl, c)?;
    let out = Tensor::from_device(y, &[b, c])?;
    Ok(tape.push(out, &[x], FirstToken))
}

// ---------- dropout: the CPU's counter-based masks, drawn on the device ----------

struct Dropout(DropoutParams);
impl Backward for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let d = buf("dropout", dout)?;
        let dx = alloc(d, d.len(), d.elem())?;
        dropout_bwd(d, &dx, self.0)?;
        Ok(vec![Some(Tensor::from_device(dx, dout.shape())?)])
    }
}

pub(crate) fn dropout(tape: &mut Tape, x: Var, p: f64, seed: u64, stream: u64) -> Result<Var> {
    let t = tape.value(x);
    let xb = buf("dropout", t)?;
    let params = DropoutParams { p, stream_key: rng::stream_key(seed, stream) };
    let y = alloc(xb, xb.len(), xb.elem())?;
    dropout_fwd(xb, &y, params)?;
    let out = Tensor::from_device(y, t.shape())?;
    Ok(tape.push(out, &[x], Dropout(params)))
}

// ---------- layer norm (mean and rstd saved, F32) ----------

struct LayerNorm {
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    rows: usize,
    cols: usize,
}

impl Backward for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, w) = (buf("layer_norm", ctx.inputs[0])?, buf("layer_norm", ctx.inputs[1])?);
        let dy = buf("layer_norm", dout)?;
        let dx = alloc(x, x.len(), x.elem())?;
        let (dw, db) = (alloc(x, self.cols, Elem::F32)?, alloc(x, self.cols, Elem::F32)?);
        layernorm::layer_norm_bwd(x, w, &self.mean, &self.rstd, dy, &dx, &dw, &db, self.rows, self.cols)?;
        Ok(vec![
            Some(Tensor::from_device(dx, ctx.inputs[0].shape())?),
            Some(Tensor::from_device(dw, &[self.cols])?),
            Some(Tensor::from_device(db, &[self.cols])?),
        ])
    }
}

pub(crate) fn layer_norm(tape: &mut Tape, x: Var, weight: Var, bias: Var, eps: f64) -> Result<Var> {
    let tx = tape.value(x);
    let (rows, cols) = tx.rows_cols();
    let (xb, wb, bb) = (buf("layer_norm", tx)?, buf("layer_norm", tape.value(weight))?, buf("layer_norm", tape.value(bias))?);
    let y = alloc(xb, xb.len(), xb.elem())?;
    let (mean, rstd) = (alloc(xb, rows, Elem::F32)?, alloc(xb, rows, Elem::F32)?);
    layernorm::layer_norm_fwd(xb, None, wb, bb, &y, None, &mean, &rstd, rows, cols, eps as f32)?;
    let out = Tensor::from_device(y, tx.shape())?;
    Ok(tape.push(out, &[x, weight, bias], LayerNorm { mean, rstd, rows, cols }))
}

// ---------- embeddings + LayerNorm, fused ----------

/// Saved for backward: the pre-LN sum, LN statistics, and the ids.
struct EmbeddingsLn {
    sum: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    ids: DeviceBuffer,
    host_ids: Vec<u32>,
    type_ids: DeviceBuffer,
    seq_len: usize,
}

impl Backward for EmbeddingsLn {
    fn name(&self) -> &'static str {
        "embeddings_ln"
    }
    // inputs: word (V, C), token_type (TT, C), position (P, C), ln weight (C), ln bias (C)
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let ln_w = buf("embeddings_ln", ctx.inputs[3])?;
        let dy = buf("embeddings_ln", dout)?;
        let (rows, cols) = dout.rows_cols();
        let dsum = alloc(dy, dy.len(), dy.elem())?;
        let (dw, db) = (alloc(dy, cols, Elem::F32)?, alloc(dy, cols, Elem::F32)?);
        layernorm::layer_norm_bwd(&self.sum, ln_w, &self.mean, &self.rstd, dy, &dsum, &dw, &db, rows, cols)?;
        let tables: Vec<DeviceBuffer> = (0..3).map(|i| zeros(dy, ctx.inputs[i].numel(), Elem::F32)).collect::<Result<_>>()?;
        embedding::embedding_bwd(&self.ids, &self.host_ids, &self.type_ids, &dsum, &tables[0], &tables[2], &tables[1], self.seq_len)?;
        let mut grads = Vec::with_capacity(5);
        for (i, t) in tables.into_iter().enumerate() {
            grads.push(Some(Tensor::from_device(t, ctx.inputs[i].shape())?));
        }
        grads.push(Some(Tensor::from_device(dw, &[cols])?));
        grads.push(Some(Tensor::from_device(db, &[cols])?));
        Ok(grads)
    }
}

/// LayerNorm(word[ids] + token_type[type_ids] + position[t]) -> (B, T, C).
/// Ids are checked against the tables here, on the host, before upload.
#[allow(clippy::too_many_arguments)]
pub fn embeddings_ln(
    tape: &mut Tape,
    word: Var,
    token_type: Var,
    position: Var,
    ln: (Var, Var),
    input_ids: &[u32],
    token_type_ids: &[u32],
    (batch, seq_len): (usize, usize),
    eps: f64,
) -> Result<Var> {
    let tables = [tape.value(word), tape.value(token_type), tape.value(position)];
    for (table, ids, what) in [(tables[0], input_ids, "input_ids"), (tables[1], token_type_ids, "token_type_ids")] {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.shape()[0]) {
            return Err(Error::InvalidArgument(format!("{what}: id {bad} is out of range for a table of {} rows", table.shape()[0])));
        }
    }
    if seq_len > tables[2].shape()[0] {
        return Err(Error::InvalidArgument(format!("sequence length {seq_len} exceeds {} positions", tables[2].shape()[0])));
    }
    let cols = tables[0].shape()[1];
    let wb = buf("embeddings_ln", tables[0])?;
    let device = wb.device();
    let ids = DeviceBuffer::from_u32(device, input_ids)?;
    let type_ids = DeviceBuffer::from_u32(device, token_type_ids)?;
    let n = batch * seq_len;
    let (sum, y) = (alloc(wb, n * cols, wb.elem())?, alloc(wb, n * cols, wb.elem())?);
    let (mean, rstd) = (alloc(wb, n, Elem::F32)?, alloc(wb, n, Elem::F32)?);
    let (ln_w, ln_b) = (buf("embeddings_ln", tape.value(ln.0))?, buf("embeddings_ln", tape.value(ln.1))?);
    embedding::embedding_ln_fwd(
        &ids,
        &type_ids,
        wb,
        buf("embeddings_ln", tables[2])?,
        buf("embeddings_ln", tables[1])?,
        seq_len,
        ln_w,
        ln_b,
        eps as f32,
        &sum,
        &y,
        &mean,
        &rstd,
    )?;
    let out = Tensor::from_device(y, &[batch, seq_len, cols])?;
    let saved = EmbeddingsLn { sum, mean, rstd, ids, host_ids: input_ids.to_vec(), type_ids, seq_len };
    Ok(tape.push(out, &[word, token_type, position, ln.0, ln.1], saved))
}

// ---------- flash attention ----------

struct Attention {
    mask: Arc<DeviceBuffer>,
    lse: DeviceBuffer,
    dims: AttentionDims,
    scale: f32,
    dropout: Option<AttentionDropout>,
}

impl Backward for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let [q, k, v] = [0, 1, 2].map(|i| buf("attention", ctx.inputs[i]));
        let (q, k, v) = (q?, k?, v?);
        let out = buf("attention", ctx.output)?;
        let d = buf("attention", dout)?;
        let grads: Vec<DeviceBuffer> = (0..3).map(|_| alloc(q, q.len(), q.elem())).collect::<Result<_>>()?;
        attention_bwd(q, k, v, &self.mask, out, &self.lse, d, &grads[0], &grads[1], &grads[2], self.dims, self.scale, self.dropout)?;
        let shape = ctx.inputs[0].shape();
        grads.into_iter().map(|g| Ok(Some(Tensor::from_device(g, shape)?))).collect()
    }
}

/// q, k, v (B, T, H·D), key mask (B·T, 1 = attend) -> context (B, T, H·D):
/// softmax(q·kᵀ·scale, masked) with dropout on the probabilities, times v,
/// per head, without materialising the (B, H, T, T) scores.
pub fn attention(
    tape: &mut Tape,
    (q, k, v): (Var, Var, Var),
    key_mask: &[u8],
    heads: usize,
    scale: f64,
    dropout: Option<(f64, u64, u64)>,
) -> Result<Var> {
    let tq = tape.value(q);
    if tq.dims() != 3 || heads == 0 || tq.shape()[2] % heads != 0 || key_mask.len() != tq.shape()[0] * tq.shape()[1] {
        return Err(Error::shape("attention", format!("q {:?} into {heads} heads with {} mask entries", tq.shape(), key_mask.len())));
    }
    for other in [k, v] {
        if tape.value(other).shape() != tq.shape() {
            return Err(Error::shape("attention", format!("q {:?} vs {:?}", tq.shape(), tape.value(other).shape())));
        }
    }
    let (b, t, c) = (tq.shape()[0], tq.shape()[1], tq.shape()[2]);
    let dims = AttentionDims { batch: b, seq_len: t, heads, head_dim: c / heads };
    let qb = buf("attention", tq)?;
    let mask = Arc::new(DeviceBuffer::from_u8(qb.device(), key_mask)?);
    let out = alloc(qb, qb.len(), qb.elem())?;
    let lse = alloc(qb, b * heads * t, Elem::F32)?;
    let dropout = dropout
        .filter(|&(p, _, _)| p > 0.0)
        .map(|(p, seed, stream)| AttentionDropout { p: p as f32, stream_key: rng::stream_key(seed, stream) });
    attention_fwd(qb, buf("attention", tape.value(k))?, buf("attention", tape.value(v))?, &mask, &out, &lse, dims, scale as f32, dropout)?;
    let out = Tensor::from_device(out, tq.shape())?;
    Ok(tape.push(out, &[q, k, v], Attention { mask, lse, dims, scale: scale as f32, dropout }))
}

// ---------- losses: the kernel writes dlogits in forward; backward scales it ----------

struct ScaledGrad {
    name: &'static str,
    dinput: Tensor,
}

impl Backward for ScaledGrad {
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        // dout is the scalar upstream gradient (often a host tensor: the seed).
        let g = dout.to_f32_vec().first().copied().unwrap_or(f32::NAN);
        if g == 1.0 {
            return Ok(vec![Some(self.dinput.clone())]);
        }
        let d = buf(self.name, &self.dinput)?;
        let out = alloc(d, d.len(), d.elem())?;
        elementwise::scale(d, &out, g)?;
        Ok(vec![Some(Tensor::from_device(out, self.dinput.shape())?)])
    }
}

/// Which loss a device loss op computes, with its host-side targets.
pub(crate) enum LossKind<'a> {
    CrossEntropy { targets: &'a [i64], class_weights: Option<&'a [f64]> },
    Focal { targets: &'a [i64], gamma: f64, alpha: Option<&'a [f64]> },
    BceWithLogits { targets: &'a [f64], pos_weight: Option<&'a [f64]> },
    SigmoidFocal { targets: &'a [f64], gamma: f64, alpha: Option<f64>, pos_weight: Option<&'a [f64]> },
    Mse { targets: &'a [f64] },
}

pub(crate) fn loss_op(tape: &mut Tape, logits: Var, kind: LossKind) -> Result<Var> {
    let t = tape.value(logits);
    let (rows, classes) = t.rows_cols();
    let lb = buf("loss", t)?;
    let device = lb.device();
    let loss_buf = alloc(lb, 1, Elem::F32)?;
    let d = alloc(lb, lb.len(), lb.elem())?;
    let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let name = match kind {
        LossKind::CrossEntropy { targets, class_weights } => {
            let y: Vec<i32> = targets.iter().map(|&v| v as i32).collect();
            let y = DeviceBuffer::from_i32(device, &y)?;
            let w = class_weights.map(|w| DeviceBuffer::from_f32(device, &to_f32(w), Elem::F32)).transpose()?;
            loss::cross_entropy(lb, &y, w.as_ref(), &loss_buf, Some(&d), rows, classes, 1.0)?;
            "cross_entropy"
        }
        LossKind::Focal { targets, gamma, alpha } => {
            let y: Vec<i32> = targets.iter().map(|&v| v as i32).collect();
            let y = DeviceBuffer::from_i32(device, &y)?;
            let a = alpha.map(|w| DeviceBuffer::from_f32(device, &to_f32(w), Elem::F32)).transpose()?;
            loss::focal_cross_entropy(lb, &y, gamma as f32, a.as_ref(), &loss_buf, Some(&d), rows, classes, 1.0)?;
            "focal_cross_entropy"
        }
        LossKind::BceWithLogits { targets, pos_weight } => {
            let y = DeviceBuffer::from_f32(device, &to_f32(targets), Elem::F32)?;
            let pw = pos_weight.map(|w| DeviceBuffer::from_f32(device, &to_f32(w), Elem::F32)).transpose()?;
            loss::bce_with_logits(lb, &y, pw.as_ref(), &loss_buf, Some(&d), rows, classes, 1.0)?;
            "bce_with_logits"
        }
        LossKind::SigmoidFocal { targets, gamma, alpha, pos_weight } => {
            let y = DeviceBuffer::from_f32(device, &to_f32(targets), Elem::F32)?;
            let pw = pos_weight.map(|w| DeviceBuffer::from_f32(device, &to_f32(w), Elem::F32)).transpose()?;
            let a = alpha.map(|a| a as f32);
            loss::sigmoid_focal(lb, &y, pw.as_ref(), gamma as f32, a, &loss_buf, Some(&d), rows, classes, 1.0)?;
            "sigmoid_focal"
        }
        LossKind::Mse { targets } => {
            let y = DeviceBuffer::from_f32(device, &to_f32(targets), Elem::F32)?;
            loss::mse(lb, &y, &loss_buf, Some(&d), t.numel(), 1.0)?;
            "mse"
        }
    };
    let dinput = Tensor::from_device(d, t.shape())?;
    let out = Tensor::from_device(loss_buf, &[1])?;
    Ok(tape.push(out, &[logits], ScaledGrad { name, dinput }))
}
