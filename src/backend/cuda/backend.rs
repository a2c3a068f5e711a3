//! [`Backend`] on a CUDA device (real or simulated): each method checks that
//! its tensors live on a device, allocates the outputs beside them and calls
//! the launchers in `ops/`. The ops a device does not run are written out
//! at the end and return [`Error::Unsupported`]: on a device the encoder
//! runs attention and the embeddings as single fused kernels, so the pieces
//! the CPU composes them from are not offered there.

use std::sync::Arc;

use super::ops::attention::{AttentionDims, AttentionDropout as KernelDropout, AttentionWindow, WindowFlags, attention_bwd, attention_fwd};
use super::ops::dropout::{DropoutParams, dropout_bwd, dropout_fwd};
use super::ops::relative_attention::{RelativeDims, relative_attention_bwd, relative_attention_fwd};
use super::ops::rows as row_ops;
use super::ops::{adamw, elementwise, embedding, gelu, gemm, layernorm, loss, rotary};
use crate::backend::{
    AdamWScalars, AttentionDropout, Backend, DropoutKey, GradClip, LinearEpilogue, LinearGrads, LossKind, NormStats, PackedAttentionMode,
    PackedDropout, PackedWeight, Saved, unsupported,
};
use crate::device::{DeviceBuffer, Elem};
use crate::error::{Error, Result};
use crate::rng;
use crate::tensor::Tensor;

/// The CUDA backend (stateless: every buffer knows its device).
pub struct Cuda;

const NAME: &str = "cuda";

/// The device buffer of a device tensor, or an error naming the op.
fn buf<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a DeviceBuffer> {
    t.device_buffer().ok_or_else(|| Error::Device(format!("{op}: mixes CPU and device tensors")))
}

/// An uninitialised buffer on the same device as `like`.
fn alloc(like: &DeviceBuffer, len: usize, elem: Elem) -> Result<DeviceBuffer> {
    DeviceBuffer::uninit(like.device(), len, elem)
}

/// Row indices as the kernels take them (u32).
fn row_indices(op: &'static str, rows: &[usize]) -> Result<Vec<u32>> {
    rows.iter().map(|&r| u32::try_from(r).map_err(|_| Error::shape(op, format!("row {r} does not fit in u32")))).collect()
}

fn zeros(like: &DeviceBuffer, len: usize, elem: Elem) -> Result<DeviceBuffer> {
    DeviceBuffer::zeros(like.device(), len, elem)
}

/// key_mask (B·T) -> the mean pool's (B·T) F32 weights on x's device.
fn mean_pool_weights(like: &DeviceBuffer, key_mask: &[u8], seq_len: usize) -> Result<DeviceBuffer> {
    DeviceBuffer::from_f32(like.device(), &elementwise::mean_pool_weights(key_mask, seq_len), Elem::F32)
}

/// A buffer of x's size and type, filled by `launch`, as a tensor of `shape`.
fn map(op: &'static str, x: &Tensor, shape: &[usize], launch: impl FnOnce(&DeviceBuffer, &DeviceBuffer) -> Result<()>) -> Result<Tensor> {
    let xb = buf(op, x)?;
    let len = shape.iter().product();
    let out = alloc(xb, len, xb.elem())?;
    launch(xb, &out)?;
    Tensor::from_device(out, shape)
}

/// What the fused embeddings kernel keeps for backward: the pre-LN sum, the
/// LN statistics and the ids, on the device (and the word ids on the host,
/// where backward groups repeated rows).
struct EmbeddingsSaved {
    sum: DeviceBuffer,
    mean: DeviceBuffer,
    rstd: DeviceBuffer,
    ids: DeviceBuffer,
    host_ids: Vec<u32>,
    type_ids: DeviceBuffer,
    seq_len: usize,
}

/// What flash attention keeps: the key mask, the log-sum-exp per query row
/// (B·H·T, F32), the launch's sizes, scale and dropout, and a sliding
/// window's half-width with its uniform-row flags (B·T, U8).
struct AttentionSaved {
    mask: Arc<DeviceBuffer>,
    lse: DeviceBuffer,
    dims: AttentionDims,
    scale: f32,
    dropout: Option<KernelDropout>,
    window: Option<WindowFlags>,
}

impl AttentionSaved {
    fn window(&self) -> Option<AttentionWindow<'_>> {
        self.window.as_ref().map(WindowFlags::window)
    }
}

/// What DeBERTa's attention keeps: its five inputs (shared, not copied),
/// the key mask and distance rows on the device, the probabilities
/// (B·H·T·T, F32), and the launch's sizes, scale and dropout.
struct RelativeSaved {
    tensors: [Tensor; 5],
    mask: DeviceBuffer,
    rows: DeviceBuffer,
    probs: DeviceBuffer,
    dims: RelativeDims,
    scale: f32,
    dropout: Option<KernelDropout>,
}

/// The dropout kernels' parameters for a site.
fn dropout_params(p: f64, key: DropoutKey) -> DropoutParams {
    DropoutParams { p, stream_key: rng::stream_key(key.seed, key.stream) }
}

impl Backend for Cuda {
    fn name(&self) -> &'static str {
        NAME
    }

    fn packs_rows(&self) -> bool {
        false
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let bb = buf("add", b)?;
        map("add", a, a.shape(), |ab, out| elementwise::add(ab, bb, out))
    }

    /// acc + grad into a new buffer. Out of place on purpose: a gradient may
    /// be shared by several tape slots (add's backward hands the same tensor
    /// to both inputs), so adding in place would corrupt the others.
    fn accumulate(&self, acc: &mut Tensor, grad: &Tensor) -> Result<()> {
        let g = buf("accumulate", grad)?;
        *acc = map("accumulate", acc, acc.shape(), |a, out| {
            out.copy_from(a)?;
            elementwise::add_assign(out, g)
        })?;
        Ok(())
    }

    fn scale(&self, x: &Tensor, s: f64) -> Result<Tensor> {
        map("scale", x, x.shape(), |xb, out| elementwise::scale(xb, out, s as f32))
    }

    fn gelu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        map("gelu", x, x.shape(), gelu::gelu_fwd)
    }

    fn gelu_bwd(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let d = buf("gelu", dy)?;
        map("gelu", x, x.shape(), |xb, dx| gelu::gelu_bwd(xb, d, dx))
    }

    // ModernBERT's GeGLU and rotary kernels (kernels/gelu.cu, rotary.cu).
    fn geglu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = x.shape().to_vec();
        let last = shape.last_mut().ok_or_else(|| Error::shape("geglu", "x is a scalar".to_string()))?;
        *last /= 2;
        let inner = *last;
        map("geglu", x, &shape, |xb, out| gelu::geglu_fwd(xb, out, inner))
    }

    fn geglu_bwd(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let d = buf("geglu", dy)?;
        let inner = x.shape().last().copied().unwrap_or(0) / 2;
        map("geglu", x, x.shape(), |xb, dx| gelu::geglu_bwd(xb, d, dx, inner))
    }

    fn rotary(&self, x: &Tensor, positions: &[usize], heads: usize, inv_freq: &[f64], inverse: bool) -> Result<Tensor> {
        let xb = buf("rotary", x)?;
        let device = xb.device();
        let rows = DeviceBuffer::from_u32(device, &row_indices("rotary", positions)?)?;
        let count = positions.iter().max().map_or(0, |&p| p + 1);
        let (cos, sin) = rotary::rotary_tables(count, inv_freq);
        let (cos, sin) = (DeviceBuffer::from_f32(device, &cos, Elem::F32)?, DeviceBuffer::from_f32(device, &sin, Elem::F32)?);
        map("rotary", x, x.shape(), |xb, out| rotary::rotary(xb, out, &rows, &cos, &sin, heads, inv_freq.len(), inverse))
    }

    fn tanh_fwd(&self, x: &Tensor) -> Result<Tensor> {
        map("tanh", x, x.shape(), elementwise::tanh_fwd)
    }

    fn tanh_bwd(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let d = buf("tanh", dy)?;
        map("tanh", y, y.shape(), |yb, dx| elementwise::tanh_bwd(yb, d, dx))
    }

    fn zeros_like(&self, like: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let b = buf("zeros_like", like)?;
        Tensor::from_device(zeros(b, shape.iter().product(), b.elem())?, shape)
    }

    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        map("relu", x, x.shape(), elementwise::relu_fwd)
    }

    fn relu_bwd(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let d = buf("relu", dy)?;
        map("relu", y, y.shape(), |yb, dx| elementwise::relu_bwd(yb, d, dx))
    }

    fn first_token_fwd(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        map("first_token", x, &[b, c], |xb, y| elementwise::first_token_fwd(xb, y, b, t, c))
    }

    fn first_token_bwd(&self, dy: &Tensor, input_shape: &[usize]) -> Result<Tensor> {
        let (b, t, c) = (input_shape[0], input_shape[1], input_shape[2]);
        map("first_token", dy, input_shape, |d, dx| elementwise::first_token_bwd(d, dx, b, t, c))
    }

    fn mean_pool_fwd(&self, x: &Tensor, key_mask: &[u8]) -> Result<Tensor> {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let weights = mean_pool_weights(buf("mean_pool", x)?, key_mask, t)?;
        map("mean_pool", x, &[b, c], |xb, y| elementwise::mean_pool_fwd(xb, &weights, y, b, t, c))
    }

    fn mean_pool_bwd(&self, dy: &Tensor, key_mask: &[u8], input_shape: &[usize]) -> Result<Tensor> {
        let (b, t, c) = (input_shape[0], input_shape[1], input_shape[2]);
        let weights = mean_pool_weights(buf("mean_pool", dy)?, key_mask, t)?;
        map("mean_pool", dy, input_shape, |d, dx| elementwise::mean_pool_bwd(d, &weights, dx, b, t, c))
    }

    fn dropout_fwd(&self, x: &Tensor, p: f64, key: DropoutKey) -> Result<Tensor> {
        map("dropout", x, x.shape(), |xb, y| dropout_fwd(xb, y, dropout_params(p, key)))
    }

    fn dropout_bwd(&self, dy: &Tensor, p: f64, key: DropoutKey) -> Result<Tensor> {
        map("dropout", dy, dy.shape(), |d, dx| dropout_bwd(d, dx, dropout_params(p, key)))
    }

    fn linear_fwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        _weight_t: Option<&Tensor>,
        out_shape: &[usize],
    ) -> Result<Tensor> {
        let (rows, _) = x.rows_cols();
        let wb = buf("linear", weight)?;
        let bias = bias.map(|b| buf("linear", b)).transpose()?;
        map("linear", x, out_shape, |xb, y| gemm::linear_fwd(xb, wb, bias, y, rows))
    }

    fn linear_bwd(&self, dy: &Tensor, x: &Tensor, weight: &Tensor, has_bias: bool, wanted: [bool; 3]) -> Result<LinearGrads> {
        let (rows, _) = x.rows_cols();
        let (xb, wb, d) = (buf("linear", x)?, buf("linear", weight)?, buf("linear", dy)?);
        let input = if wanted[0] {
            let dx = alloc(xb, xb.len(), xb.elem())?;
            gemm::linear_bwd_input(d, wb, &dx, rows, false)?;
            Some(Tensor::from_device(dx, x.shape())?)
        } else {
            None
        };
        let (want_w, want_b) = (wanted[1], has_bias && wanted[2]);
        let (mut weight_grad, mut bias_grad) = (None, None);
        if want_w || want_b {
            // One kernel writes both (F32, whatever the working type).
            let out_features = weight.shape()[0];
            let dw = alloc(wb, wb.len(), Elem::F32)?;
            let db = if has_bias { Some(alloc(wb, out_features, Elem::F32)?) } else { None };
            gemm::linear_bwd_weight(d, xb, &dw, db.as_ref(), rows, false)?;
            if want_w {
                weight_grad = Some(Tensor::from_device(dw, weight.shape())?);
            }
            if let (true, Some(db)) = (want_b, db) {
                bias_grad = Some(Tensor::from_device(db, &[out_features])?);
            }
        }
        Ok(LinearGrads { input, weight: weight_grad, bias: bias_grad })
    }

    fn layer_norm_fwd(&self, x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, NormStats)> {
        let (rows, cols) = x.rows_cols();
        let (xb, wb, bb) = (buf("layer_norm", x)?, buf("layer_norm", weight)?, buf("layer_norm", bias)?);
        let y = alloc(xb, xb.len(), xb.elem())?;
        let (mean, rstd) = (alloc(xb, rows, Elem::F32)?, alloc(xb, rows, Elem::F32)?);
        layernorm::layer_norm_fwd(xb, None, wb, bb, &y, None, &mean, &rstd, rows, cols, eps as f32)?;
        let stats = NormStats { mean: Tensor::from_device(mean, &[rows])?, rstd: Tensor::from_device(rstd, &[rows])? };
        Ok((Tensor::from_device(y, x.shape())?, stats))
    }

    fn layer_norm_bwd(&self, x: &Tensor, weight: &Tensor, stats: &NormStats, dy: &Tensor) -> Result<[Tensor; 3]> {
        let (rows, cols) = x.rows_cols();
        let (xb, wb, d) = (buf("layer_norm", x)?, buf("layer_norm", weight)?, buf("layer_norm", dy)?);
        let (mean, rstd) = (buf("layer_norm", &stats.mean)?, buf("layer_norm", &stats.rstd)?);
        let dx = alloc(xb, xb.len(), xb.elem())?;
        let (dw, db) = (alloc(xb, cols, Elem::F32)?, alloc(xb, cols, Elem::F32)?);
        layernorm::layer_norm_bwd(xb, wb, mean, rstd, d, &dx, &dw, &db, rows, cols)?;
        Ok([Tensor::from_device(dx, x.shape())?, Tensor::from_device(dw, &[cols])?, Tensor::from_device(db, &[cols])?])
    }

    fn embeddings_ln_fwd(
        &self,
        [word, token_type, position]: [&Tensor; 3],
        (ln_weight, ln_bias): (&Tensor, &Tensor),
        (input_ids, token_type_ids): (&[u32], &[u32]),
        (batch, seq_len): (usize, usize),
        eps: f64,
    ) -> Result<(Tensor, Saved)> {
        let op = "embeddings_ln";
        let cols = word.shape()[1];
        let wb = buf(op, word)?;
        let device = wb.device();
        let ids = DeviceBuffer::from_u32(device, input_ids)?;
        let type_ids = DeviceBuffer::from_u32(device, token_type_ids)?;
        let n = batch * seq_len;
        let (sum, y) = (alloc(wb, n * cols, wb.elem())?, alloc(wb, n * cols, wb.elem())?);
        let (mean, rstd) = (alloc(wb, n, Elem::F32)?, alloc(wb, n, Elem::F32)?);
        let (ln_w, ln_b) = (buf(op, ln_weight)?, buf(op, ln_bias)?);
        let (positions, types) = (buf(op, position)?, buf(op, token_type)?);
        embedding::embedding_ln_fwd(&ids, &type_ids, wb, positions, types, seq_len, ln_w, ln_b, eps as f32, &sum, &y, &mean, &rstd)?;
        let out = Tensor::from_device(y, &[batch, seq_len, cols])?;
        Ok((out, Saved::new(EmbeddingsSaved { sum, mean, rstd, ids, host_ids: input_ids.to_vec(), type_ids, seq_len })))
    }

    fn embeddings_ln_bwd(&self, saved: &Saved, tables: [&Tensor; 3], ln_weight: &Tensor, dy: &Tensor) -> Result<[Tensor; 5]> {
        let op = "embeddings_ln";
        let s: &EmbeddingsSaved = saved.get(op)?;
        let ln_w = buf(op, ln_weight)?;
        let d = buf(op, dy)?;
        let (rows, cols) = dy.rows_cols();
        let dsum = alloc(d, d.len(), d.elem())?;
        let (dw, db) = (alloc(d, cols, Elem::F32)?, alloc(d, cols, Elem::F32)?);
        layernorm::layer_norm_bwd(&s.sum, ln_w, &s.mean, &s.rstd, d, &dsum, &dw, &db, rows, cols)?;
        let [dword, dtype, dposition] = [0, 1, 2].map(|i| zeros(d, tables[i].numel(), Elem::F32));
        let (dword, dtype, dposition) = (dword?, dtype?, dposition?);
        embedding::embedding_bwd(&s.ids, &s.host_ids, &s.type_ids, &dsum, &dword, &dposition, &dtype, s.seq_len)?;
        Ok([
            Tensor::from_device(dword, tables[0].shape())?,
            Tensor::from_device(dtype, tables[1].shape())?,
            Tensor::from_device(dposition, tables[2].shape())?,
            Tensor::from_device(dw, &[cols])?,
            Tensor::from_device(db, &[cols])?,
        ])
    }

    fn attention_fwd(
        &self,
        [q, k, v]: [&Tensor; 3],
        key_mask: &[u8],
        heads: usize,
        scale: f64,
        window: Option<usize>,
        dropout: Option<AttentionDropout>,
    ) -> Result<(Tensor, Saved)> {
        let (b, t, c) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let dims = AttentionDims { batch: b, seq_len: t, heads, head_dim: c / heads };
        let qb = buf("attention", q)?;
        let mask = Arc::new(DeviceBuffer::from_u8(qb.device(), key_mask)?);
        let out = alloc(qb, qb.len(), qb.elem())?;
        let lse = alloc(qb, b * heads * t, Elem::F32)?;
        let dropout = dropout.map(|d| KernelDropout { p: d.p as f32, stream_key: rng::stream_key(d.key.seed, d.key.stream) });
        // ModernBERT's local layers: which queries' windows hold no real key.
        let window = window.map(|w| WindowFlags::new(qb.device(), key_mask, t, w)).transpose()?;
        let saved = AttentionSaved { mask, lse, dims, scale: scale as f32, dropout, window };
        attention_fwd(
            qb,
            buf("attention", k)?,
            buf("attention", v)?,
            &saved.mask,
            &out,
            &saved.lse,
            dims,
            saved.scale,
            dropout,
            saved.window(),
        )?;
        Ok((Tensor::from_device(out, q.shape())?, Saved::new(saved)))
    }

    fn attention_bwd(&self, [q, k, v]: [&Tensor; 3], output: &Tensor, saved: &Saved, dout: &Tensor) -> Result<[Tensor; 3]> {
        let s: &AttentionSaved = saved.get("attention")?;
        let (qb, kb, vb) = (buf("attention", q)?, buf("attention", k)?, buf("attention", v)?);
        let (out, d) = (buf("attention", output)?, buf("attention", dout)?);
        let [dq, dk, dv] = [0, 1, 2].map(|_| alloc(qb, qb.len(), qb.elem()));
        let (dq, dk, dv) = (dq?, dk?, dv?);
        attention_bwd(qb, kb, vb, &s.mask, out, &s.lse, d, &dq, &dk, &dv, s.dims, s.scale, s.dropout, s.window())?;
        Ok([Tensor::from_device(dq, q.shape())?, Tensor::from_device(dk, q.shape())?, Tensor::from_device(dv, q.shape())?])
    }

    fn relative_attention_fwd(
        &self,
        [q, k, v]: [&Tensor; 3],
        [pq, pk]: [&Tensor; 2],
        key_mask: &[u8],
        rows: &[u32],
        heads: usize,
        scale: f64,
        dropout: Option<AttentionDropout>,
    ) -> Result<(Tensor, Saved)> {
        let op = "relative_attention";
        let (b, t, c) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let dims = RelativeDims { batch: b, seq_len: t, heads, head_dim: c / heads, positions: pq.shape()[0] };
        let qb = buf(op, q)?;
        let device = qb.device();
        let mask = DeviceBuffer::from_u8(device, key_mask)?;
        let rows = DeviceBuffer::from_u32(device, rows)?;
        let out = alloc(qb, qb.len(), qb.elem())?;
        let probs = alloc(qb, b * heads * t * t, Elem::F32)?;
        let dropout = dropout.map(|d| KernelDropout { p: d.p as f32, stream_key: rng::stream_key(d.key.seed, d.key.stream) });
        let inputs = (qb, buf(op, k)?, buf(op, v)?);
        relative_attention_fwd(inputs, (buf(op, pq)?, buf(op, pk)?), &rows, &mask, &out, &probs, dims, scale as f32, dropout)?;
        let tensors = [q.clone(), k.clone(), v.clone(), pq.clone(), pk.clone()];
        let saved = RelativeSaved { tensors, mask, rows, probs, dims, scale: scale as f32, dropout };
        Ok((Tensor::from_device(out, q.shape())?, Saved::new(saved)))
    }

    fn relative_attention_bwd(&self, q: &Tensor, pq: &Tensor, saved: &Saved, dout: &Tensor) -> Result<[Tensor; 5]> {
        let op = "relative_attention";
        let s: &RelativeSaved = saved.get(op)?;
        let [qb, kb, vb, pqb, pkb] = [0, 1, 2, 3, 4].map(|i| buf(op, &s.tensors[i]));
        let (qb, kb, vb, pqb, pkb) = (qb?, kb?, vb?, pqb?, pkb?);
        let [dq, dk, dv] = [0, 1, 2].map(|_| alloc(qb, qb.len(), qb.elem()));
        let (dq, dk, dv) = (dq?, dk?, dv?);
        let (dpq, dpk) = (alloc(pqb, pqb.len(), pqb.elem())?, alloc(pqb, pqb.len(), pqb.elem())?);
        let dscores = alloc(qb, s.probs.len(), Elem::F32)?;
        let grads = ((&dq, &dk, &dv), (&dpq, &dpk));
        relative_attention_bwd(
            (qb, kb, vb),
            (pqb, pkb),
            &s.rows,
            &s.mask,
            &s.probs,
            buf(op, dout)?,
            &dscores,
            grads.0,
            grads.1,
            s.dims,
            s.scale,
            s.dropout,
        )?;
        let (x, table) = (q.shape(), pq.shape());
        Ok([
            Tensor::from_device(dq, x)?,
            Tensor::from_device(dk, x)?,
            Tensor::from_device(dv, x)?,
            Tensor::from_device(dpq, table)?,
            Tensor::from_device(dpk, table)?,
        ])
    }

    fn loss(&self, logits: &Tensor, kind: LossKind) -> Result<(Tensor, Tensor)> {
        let (rows, classes) = logits.rows_cols();
        let lb = buf("loss", logits)?;
        let device = lb.device();
        let value = alloc(lb, 1, Elem::F32)?;
        let d = alloc(lb, lb.len(), lb.elem())?;
        let upload = |v: &[f64]| DeviceBuffer::from_f32(device, &v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), Elem::F32);
        let classes_of = |targets: &[i64]| DeviceBuffer::from_i32(device, &targets.iter().map(|&v| v as i32).collect::<Vec<i32>>());
        match kind {
            LossKind::CrossEntropy { targets, class_weights } => {
                let w = class_weights.map(upload).transpose()?;
                loss::cross_entropy(lb, &classes_of(targets)?, w.as_ref(), &value, Some(&d), rows, classes, 1.0)?;
            }
            LossKind::Focal { targets, gamma, alpha } => {
                let a = alpha.map(upload).transpose()?;
                loss::focal_cross_entropy(lb, &classes_of(targets)?, gamma as f32, a.as_ref(), &value, Some(&d), rows, classes, 1.0)?;
            }
            LossKind::BceWithLogits { targets, pos_weight } => {
                let pw = pos_weight.map(upload).transpose()?;
                loss::bce_with_logits(lb, &upload(targets)?, pw.as_ref(), &value, Some(&d), rows, classes, 1.0)?;
            }
            LossKind::SigmoidFocal { targets, gamma, alpha, pos_weight } => {
                let pw = pos_weight.map(upload).transpose()?;
                let a = alpha.map(|a| a as f32);
                loss::sigmoid_focal(lb, &upload(targets)?, pw.as_ref(), gamma as f32, a, &value, Some(&d), rows, classes, 1.0)?;
            }
            LossKind::Mse { targets } => {
                loss::mse(lb, &upload(targets)?, &value, Some(&d), logits.numel(), 1.0)?;
            }
        }
        Ok((Tensor::from_device(value, &[1])?, Tensor::from_device(d, logits.shape())?))
    }

    // ---- the optimizer ----

    fn grad_clip(&self, grads: &[&Tensor], max_norm: f64) -> Result<GradClip> {
        let buffers = grads.iter().map(|g| buf("grad_clip", g)).collect::<Result<Vec<_>>>()?;
        if buffers.iter().any(|b| b.elem() != Elem::F32) {
            return Err(Error::Device("grad_clip: parameter gradients must be F32 on the device".into()));
        }
        let Some(first) = buffers.first() else {
            return Err(Error::InvalidArgument("grad_clip: no gradients".into()));
        };
        // Both written by the final kernel: no fill needed.
        let (norm, factor) = (alloc(first, 1, Elem::F32)?, alloc(first, 1, Elem::F32)?);
        adamw::grad_norm(&buffers, max_norm as f32, &norm, &factor)?;
        // The norm is read back for the log and the non-finite check; the factor stays on the device.
        let norm = norm.to_f32_vec()?[0] as f64;
        Ok(GradClip { norm, squares: None, factor: Tensor::from_device(factor, &[1])? })
    }

    fn adamw_update(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        copy: Option<&Tensor>,
        s: &AdamWScalars,
        clip: Option<&Tensor>,
    ) -> Result<()> {
        const OP: &str = "adamw_update";
        let step = adamw::AdamWStep::new(s.lr, s.weight_decay, (s.beta1, s.beta2), s.eps, s.step);
        let copy = copy.map(|c| buf(OP, c)).transpose()?;
        let clip = clip.map(|c| buf(OP, c)).transpose()?;
        adamw::adamw_update(buf(OP, param)?, buf(OP, grad)?, buf(OP, m)?, buf(OP, v)?, copy, step, clip)
    }

    // ---- not offered on a device: the fused kernels above cover them ----

    fn batched_matmul(&self, _: &Tensor, _: &Tensor, _: bool, _: bool) -> Result<Tensor> {
        unsupported("batched_matmul", NAME)
    }

    fn batched_matmul_bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: bool,
        _: bool,
        _: [bool; 2],
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        unsupported("batched_matmul", NAME)
    }

    fn transpose(&self, _: &Tensor) -> Result<Tensor> {
        unsupported("transpose", NAME)
    }

    fn linear_bf16_bwd(&self, _: &Tensor, _: &Tensor, _: &Tensor, _: bool, _: [bool; 3]) -> Result<LinearGrads> {
        // The device trains BF16 through its own working copies (linear_bwd on BF16 tensors).
        unsupported("linear_bf16_bwd", "cuda")
    }

    fn linear_packed_fwd(&self, _: &Tensor, _: &PackedWeight, _: Option<&Tensor>, _: LinearEpilogue<'_>, _: &[usize]) -> Result<Tensor> {
        unsupported("linear_packed", NAME)
    }

    fn embedding_fwd(&self, _: &Tensor, _: &[u32], _: &[usize]) -> Result<Tensor> {
        unsupported("embedding", NAME)
    }

    fn embedding_bwd(&self, _: &Tensor, _: &[u32], _: &[usize]) -> Result<Tensor> {
        unsupported("embedding", NAME)
    }

    fn packed_attention_fwd(&self, _: [&Tensor; 3], _: &[usize], _: usize, _: f64, _: PackedAttentionMode) -> Result<Tensor> {
        unsupported("packed_attention", NAME)
    }

    fn packed_attention_qkv_fwd(&self, _: &Tensor, _: &[usize], _: usize, _: f64) -> Result<Tensor> {
        unsupported("packed_attention_qkv", NAME)
    }

    fn packed_attention_bwd(
        &self,
        _: [&Tensor; 3],
        _: &Tensor,
        _: &[usize],
        _: usize,
        _: f64,
        _: PackedAttentionMode,
    ) -> Result<[Tensor; 3]> {
        unsupported("packed_attention", NAME)
    }

    fn dropout_rows(&self, _: &Tensor, _: f64, _: DropoutKey, _: &[usize]) -> Result<Tensor> {
        unsupported("dropout_rows", NAME)
    }

    fn packed_relative_attention_fwd(
        &self,
        _: [&Tensor; 3],
        _: [&Tensor; 2],
        _: &[usize],
        _: &[u32],
        _: usize,
        _: f64,
        _: Option<PackedDropout>,
    ) -> Result<Tensor> {
        unsupported("packed_relative_attention", NAME)
    }

    fn packed_relative_attention_bwd(
        &self,
        _: [&Tensor; 3],
        _: [&Tensor; 2],
        _: &Tensor,
        _: &[usize],
        _: &[u32],
        _: usize,
        _: f64,
        _: Option<PackedDropout>,
    ) -> Result<[Tensor; 5]> {
        unsupported("packed_relative_attention", NAME)
    }

    fn permute_heads(&self, _: &Tensor, _: usize, split: bool) -> Result<Tensor> {
        unsupported(if split { "split_heads" } else { "merge_heads" }, NAME)
    }

    fn masked_softmax_fwd(&self, _: &Tensor, _: &[u8]) -> Result<Tensor> {
        unsupported("masked_softmax", NAME)
    }

    fn masked_softmax_bwd(&self, _: &Tensor, _: &Tensor, _: &[u8]) -> Result<Tensor> {
        unsupported("masked_softmax", NAME)
    }

    // x (R, C) -> (rows.len(), C)
    fn gather_rows(&self, x: &Tensor, rows: &[usize]) -> Result<Tensor> {
        let op = "gather_rows";
        let xb = buf(op, x)?;
        let (_, cols) = x.rows_cols();
        let host = row_indices(op, rows)?;
        let device_rows = DeviceBuffer::from_u32(xb.device(), &host)?;
        let out = alloc(xb, rows.len() * cols, xb.elem())?;
        row_ops::gather_rows(xb, &device_rows, &host, &out, cols)?;
        Tensor::from_device(out, &[rows.len(), cols])
    }

    // x (N, C) -> `shape` (R, C) with row rows[i] = x[i], zeros elsewhere
    fn scatter_rows(&self, x: &Tensor, rows: &[usize], shape: &[usize]) -> Result<Tensor> {
        let op = "scatter_rows";
        let xb = buf(op, x)?;
        let cols = shape.last().copied().unwrap_or(0);
        let host = row_indices(op, rows)?;
        let device_rows = DeviceBuffer::from_u32(xb.device(), &host)?;
        let out = zeros(xb, shape.iter().product(), xb.elem())?;
        row_ops::scatter_rows(xb, &device_rows, &host, &out, cols)?;
        Tensor::from_device(out, shape)
    }
}
