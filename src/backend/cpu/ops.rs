//! [`Backend`] on the CPU: each method picks the tensor's float type (f32 or
//! f64; BF16 compute is refused with a DType error) and calls the generic
//! kernel of its family in this folder.

use super::attention::{AttentionSaved, Dims, attention_bwd, attention_fwd};
use super::dropout::{dropout_apply, dropout_rows_apply};
use super::epilogue::Epilogue;
use super::matmul::{Operand, batched_matmul, linear_bwd_input, linear_bwd_weight, linear_fwd, transpose};
use super::norm::{layer_norm_bwd, layer_norm_fwd, sum_rows};
use super::packed_attention::{
    packed_attention_bwd, packed_attention_fwd, packed_attention_fwd_f32, packed_attention_qkv_fwd, packed_attention_qkv_fwd_f32,
};
use super::relative_attention::{
    RelativeDims, RelativeSaved, packed_relative_attention_bwd, packed_relative_attention_fwd, relative_attention_bwd,
    relative_attention_fwd,
};
use super::softmax::{masked_softmax_bwd, masked_softmax_fwd};
use super::{activation, adamw, layout, loss};
use crate::backend::{
    AdamWScalars, AttentionDropout, Backend, DropoutKey, GradClip, LinearEpilogue, LinearGrads, LossKind, NormStats, PackedAttentionMode,
    PackedDropout, PackedWeight, Saved, unsupported,
};
use crate::error::{Error, Result};
use crate::tensor::{DType, Float, Tensor};
use crate::with_float;

/// The CPU backend (stateless: the rayon pool is global).
pub struct Cpu;

/// (batch, rows, cols) of a tensor whose last two dims are a matrix.
fn batch_dims(t: &Tensor) -> (usize, usize, usize) {
    let s = t.shape();
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    (s[..s.len() - 2].iter().product(), r, c)
}

/// Values converted to the kernel's float type.
fn cast<T: Float>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&v| T::from_f64(v)).collect()
}

/// What embeddings_ln's forward keeps: the sum before LayerNorm, its
/// statistics, and the ids of the three tables.
struct EmbeddingsSaved {
    sum: Tensor,
    stats: NormStats,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    positions: Vec<u32>,
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn packs_rows(&self) -> bool {
        true
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        with_float!(a.dtype(), "add", |T| Tensor::from_vec(activation::add(a.data::<T>()?, b.data::<T>()?), a.shape()))
    }

    fn accumulate(&self, acc: &mut Tensor, grad: &Tensor) -> Result<()> {
        with_float!(acc.dtype(), "accumulate", |T| {
            let g = grad.data::<T>()?;
            activation::add_assign(acc.data_mut::<T>()?, g);
            Ok(())
        })
    }

    fn scale(&self, x: &Tensor, s: f64) -> Result<Tensor> {
        with_float!(x.dtype(), "scale", |T| Tensor::from_vec(activation::scale(x.data::<T>()?, s as T), x.shape()))
    }

    fn gelu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        with_float!(x.dtype(), "gelu", |T| Tensor::from_vec(activation::gelu_fwd(x.data::<T>()?), x.shape()))
    }

    fn gelu_bwd(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        with_float!(x.dtype(), "gelu", |T| Tensor::from_vec(activation::gelu_bwd(x.data::<T>()?, dy.data::<T>()?), x.shape()))
    }

    fn geglu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        let cols = x.rows_cols().1;
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("checked by the op") = cols / 2;
        with_float!(x.dtype(), "geglu", |T| Tensor::from_vec(activation::geglu_fwd(x.data::<T>()?, cols / 2), &shape))
    }

    fn geglu_bwd(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let cols = x.rows_cols().1;
        with_float!(x.dtype(), "geglu", |T| Tensor::from_vec(activation::geglu_bwd(x.data::<T>()?, dy.data::<T>()?, cols / 2), x.shape()))
    }

    fn rotary(&self, x: &Tensor, positions: &[usize], heads: usize, inv_freq: &[f64], inverse: bool) -> Result<Tensor> {
        with_float!(x.dtype(), "rotary", |T| Tensor::from_vec(
            super::rotary::rotary(x.data::<T>()?, positions, heads, inv_freq, inverse),
            x.shape()
        ))
    }

    fn tanh_fwd(&self, x: &Tensor) -> Result<Tensor> {
        with_float!(x.dtype(), "tanh", |T| Tensor::from_vec(activation::tanh_fwd(x.data::<T>()?), x.shape()))
    }

    fn tanh_bwd(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        with_float!(y.dtype(), "tanh", |T| Tensor::from_vec(activation::tanh_bwd(y.data::<T>()?, dy.data::<T>()?), y.shape()))
    }

    fn zeros_like(&self, like: &Tensor, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::zeros(shape, like.dtype()))
    }

    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor> {
        with_float!(x.dtype(), "relu", |T| Tensor::from_vec(activation::relu_fwd(x.data::<T>()?), x.shape()))
    }

    fn relu_bwd(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
        with_float!(y.dtype(), "relu", |T| Tensor::from_vec(activation::relu_bwd(y.data::<T>()?, dy.data::<T>()?), y.shape()))
    }

    fn first_token_fwd(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        with_float!(x.dtype(), "first_token", |T| Tensor::from_vec(layout::first_token_fwd(x.data::<T>()?, b, t, c), &[b, c]))
    }

    fn mean_pool_fwd(&self, x: &Tensor, key_mask: &[u8]) -> Result<Tensor> {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        with_float!(x.dtype(), "mean_pool", |T| Tensor::from_vec(layout::mean_pool_fwd(x.data::<T>()?, key_mask, b, t, c), &[b, c]))
    }

    fn mean_pool_bwd(&self, dy: &Tensor, key_mask: &[u8], input_shape: &[usize]) -> Result<Tensor> {
        let (b, t, c) = (input_shape[0], input_shape[1], input_shape[2]);
        with_float!(dy.dtype(), "mean_pool", |T| Tensor::from_vec(layout::mean_pool_bwd(dy.data::<T>()?, key_mask, b, t, c), input_shape))
    }

    fn first_token_bwd(&self, dy: &Tensor, input_shape: &[usize]) -> Result<Tensor> {
        let (b, t, c) = (input_shape[0], input_shape[1], input_shape[2]);
        with_float!(dy.dtype(), "first_token", |T| Tensor::from_vec(layout::first_token_bwd(dy.data::<T>()?, b, t, c), input_shape))
    }

    fn dropout_fwd(&self, x: &Tensor, p: f64, key: DropoutKey) -> Result<Tensor> {
        with_float!(x.dtype(), "dropout", |T| Tensor::from_vec(dropout_apply(x.data::<T>()?, p, key), x.shape()))
    }

    fn dropout_bwd(&self, dy: &Tensor, p: f64, key: DropoutKey) -> Result<Tensor> {
        self.dropout_fwd(dy, p, key)
    }

    fn dropout_rows(&self, x: &Tensor, p: f64, key: DropoutKey, rows: &[usize]) -> Result<Tensor> {
        let (n, cols) = x.rows_cols();
        if rows.len() != n {
            return Err(Error::shape("dropout_rows", format!("{} padded rows for x {:?}", rows.len(), x.shape())));
        }
        with_float!(x.dtype(), "dropout", |T| Tensor::from_vec(dropout_rows_apply(x.data::<T>()?, cols, p, key, rows), x.shape()))
    }

    fn linear_fwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        weight_t: Option<&Tensor>,
        out_shape: &[usize],
    ) -> Result<Tensor> {
        let (n, k) = x.rows_cols();
        let out_features = weight.shape()[0];
        with_float!(x.dtype(), "linear", |T| {
            let w = match weight_t {
                Some(t) if t.shape() == [k, out_features] && t.dtype() == x.dtype() => Operand::new(t.data::<T>()?, k, out_features, false),
                _ => Operand::new(weight.data::<T>()?, out_features, k, true),
            };
            let bias = bias.map(|b| b.data::<T>()).transpose()?;
            Tensor::from_vec(linear_fwd(x.data::<T>()?, n, k, w, bias, out_features), out_shape)
        })
    }

    fn linear_bwd(&self, dy: &Tensor, x: &Tensor, weight: &Tensor, has_bias: bool, wanted: [bool; 3]) -> Result<LinearGrads> {
        let (n, k) = x.rows_cols();
        let out_features = weight.shape()[0];
        with_float!(x.dtype(), "linear", |T| {
            let d = dy.data::<T>()?;
            let input = wanted[0].then(|| Tensor::from_vec(linear_bwd_input(d, n, weight.data::<T>()?, out_features, k), x.shape()));
            let weight_grad = wanted[1].then(|| Tensor::from_vec(linear_bwd_weight(d, x.data::<T>()?, n, out_features, k), weight.shape()));
            let bias = (has_bias && wanted[2]).then(|| Tensor::from_vec(sum_rows(d, out_features), &[out_features]));
            Ok(LinearGrads { input: input.transpose()?, weight: weight_grad.transpose()?, bias: bias.transpose()? })
        })
    }

    fn linear_bf16_bwd(&self, dy: &Tensor, x: &Tensor, weight: &Tensor, has_bias: bool, wanted: [bool; 3]) -> Result<LinearGrads> {
        let (n, k) = x.rows_cols();
        let out = weight.shape()[0];
        let path = super::bf16_linear::best_path();
        let wanted = [wanted[0], wanted[1], has_bias && wanted[2]];
        let [dx, dw, db] = super::bf16_linear::linear_bf16_backward(
            dy.data::<f32>()?,
            x.data::<f32>()?,
            weight.data::<f32>()?,
            (n, out, k),
            wanted,
            path,
        )?;
        Ok(LinearGrads {
            input: dx.map(|v| Tensor::from_vec(v, x.shape())).transpose()?,
            weight: dw.map(|v| Tensor::from_vec(v, weight.shape())).transpose()?,
            bias: db.map(|v| Tensor::from_vec(v, &[out])).transpose()?,
        })
    }

    fn batched_matmul(&self, a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor> {
        let (batch, ar, ac) = batch_dims(a);
        let (_, br, bc) = batch_dims(b);
        let m = if transpose_a { ac } else { ar };
        let n = if transpose_b { br } else { bc };
        let mut out_shape = a.shape()[..a.dims() - 2].to_vec();
        out_shape.extend([m, n]);
        with_float!(a.dtype(), "batched_matmul", |T| {
            let mut c = crate::tensor::pool::take::<T>(batch * m * n);
            batched_matmul(batch, a.data::<T>()?, ar, ac, transpose_a, b.data::<T>()?, br, bc, transpose_b, &mut c, false);
            Tensor::from_vec(c, &out_shape)
        })
    }

    fn batched_matmul_bwd(
        &self,
        dc: &Tensor,
        a: &Tensor,
        b: &Tensor,
        transpose_a: bool,
        transpose_b: bool,
        wanted: [bool; 2],
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (batch, ar, ac) = batch_dims(a);
        let (_, br, bc) = batch_dims(b);
        let (_, m, n) = batch_dims(dc);
        let (ta, tb) = (transpose_a, transpose_b);
        with_float!(a.dtype(), "batched_matmul", |T| {
            let (va, vb, vc) = (a.data::<T>()?, b.data::<T>()?, dc.data::<T>()?);
            // With C = A'·B': dA' = dC·B'ᵀ and dB' = A'ᵀ·dC; transposing back
            // where A or B entered transposed gives the four cases below.
            let grad_a = if wanted[0] {
                let mut g = crate::tensor::pool::take::<T>(a.numel());
                if !ta {
                    batched_matmul(batch, vc, m, n, false, vb, br, bc, !tb, &mut g, false);
                } else {
                    batched_matmul(batch, vb, br, bc, tb, vc, m, n, true, &mut g, false);
                }
                Some(Tensor::from_vec(g, a.shape())?)
            } else {
                None
            };
            let grad_b = if wanted[1] {
                let mut g = crate::tensor::pool::take::<T>(b.numel());
                if !tb {
                    batched_matmul(batch, va, ar, ac, !ta, vc, m, n, false, &mut g, false);
                } else {
                    batched_matmul(batch, vc, m, n, true, va, ar, ac, ta, &mut g, false);
                }
                Some(Tensor::from_vec(g, b.shape())?)
            } else {
                None
            };
            Ok((grad_a, grad_b))
        })
    }

    fn transpose(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims() != 2 {
            return Err(Error::shape("transpose", format!("expected a matrix, got {:?}", x.shape())));
        }
        let (rows, cols) = (x.shape()[0], x.shape()[1]);
        with_float!(x.dtype(), "transpose", |T| Tensor::from_vec(transpose(x.data::<T>()?, rows, cols), &[cols, rows]))
    }

    fn linear_packed_fwd(
        &self,
        x: &Tensor,
        weight: &PackedWeight,
        bias: Option<&Tensor>,
        epilogue: LinearEpilogue<'_>,
        out_shape: &[usize],
    ) -> Result<Tensor> {
        let (n, k) = x.rows_cols();
        let (out, in_features) = weight.shape();
        if k != in_features || out_shape.last() != Some(&out) {
            return Err(Error::shape(
                "linear_packed",
                format!("x {:?} · packed weight ({out}, {in_features})ᵀ -> {out_shape:?}", x.shape()),
            ));
        }
        let bias = bias.map(|b| b.data::<f32>()).transpose()?;
        let epilogue = match epilogue {
            LinearEpilogue::Plain => Epilogue::Plain,
            LinearEpilogue::Gelu => Epilogue::Gelu,
            LinearEpilogue::Residual(residual) => {
                if residual.shape() != out_shape {
                    return Err(Error::shape("linear_packed", format!("a residual {:?} for outputs {out_shape:?}", residual.shape())));
                }
                Epilogue::Residual(residual.data::<f32>()?)
            }
        };
        let x = x.data::<f32>()?;
        let y = match weight {
            PackedWeight::Int8(w) => super::int8::linear_int8_with(x, n, w, bias, epilogue, super::int8::best_path())?,
            PackedWeight::Bf16(w) => super::bf16_linear::linear_bf16_with(x, n, w, bias, epilogue, super::bf16_linear::best_path())?,
            PackedWeight::F32(w) => {
                let path = super::packed_linear::fast_path().unwrap_or(super::packed_linear::PackedPath::Portable);
                super::packed_linear::linear_packed_with(x, n, w, bias, epilogue, path)?
            }
        };
        Tensor::from_vec(y, out_shape)
    }

    fn layer_norm_fwd(&self, x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, NormStats)> {
        let (_, cols) = x.rows_cols();
        with_float!(x.dtype(), "layer_norm", |T| {
            let (y, mean, rstd) = layer_norm_fwd(x.data::<T>()?, weight.data::<T>()?, bias.data::<T>()?, cols, eps);
            let rows = mean.len();
            Ok((
                Tensor::from_vec(y, x.shape())?,
                NormStats { mean: Tensor::from_vec(mean, &[rows])?, rstd: Tensor::from_vec(rstd, &[rows])? },
            ))
        })
    }

    fn layer_norm_bwd(&self, x: &Tensor, weight: &Tensor, stats: &NormStats, dy: &Tensor) -> Result<[Tensor; 3]> {
        let cols = weight.numel();
        with_float!(x.dtype(), "layer_norm", |T| {
            let (dx, dw, db) = layer_norm_bwd(
                x.data::<T>()?,
                weight.data::<T>()?,
                stats.mean.data::<T>()?,
                stats.rstd.data::<T>()?,
                dy.data::<T>()?,
                cols,
            );
            Ok([Tensor::from_vec(dx, x.shape())?, Tensor::from_vec(dw, &[cols])?, Tensor::from_vec(db, &[cols])?])
        })
    }

    fn embedding_fwd(&self, table: &Tensor, ids: &[u32], out_shape: &[usize]) -> Result<Tensor> {
        let cols = table.shape()[1];
        with_float!(table.dtype(), "embedding", |T| Tensor::from_vec(layout::embedding_fwd(table.data::<T>()?, cols, ids), out_shape))
    }

    fn embedding_bwd(&self, dy: &Tensor, ids: &[u32], table_shape: &[usize]) -> Result<Tensor> {
        let cols = table_shape[1];
        let len = table_shape.iter().product();
        with_float!(dy.dtype(), "embedding", |T| Tensor::from_vec(layout::embedding_bwd(dy.data::<T>()?, cols, ids, len), table_shape))
    }

    fn embeddings_ln_fwd(
        &self,
        [word, token_type, position]: [&Tensor; 3],
        (ln_weight, ln_bias): (&Tensor, &Tensor),
        (ids, type_ids): (&[u32], &[u32]),
        (batch, seq_len): (usize, usize),
        eps: f64,
    ) -> Result<(Tensor, Saved)> {
        // HF's order of addition: word + token type, then + position.
        let shape = [batch, seq_len, word.shape()[1]];
        let positions: Vec<u32> = (0..batch).flat_map(|_| 0..seq_len as u32).collect();
        let words = self.embedding_fwd(word, ids, &shape)?;
        let types = self.embedding_fwd(token_type, type_ids, &shape)?;
        let places = self.embedding_fwd(position, &positions, &shape)?;
        let sum = self.add(&self.add(&words, &types)?, &places)?;
        let (y, stats) = self.layer_norm_fwd(&sum, ln_weight, ln_bias, eps)?;
        Ok((y, Saved::new(EmbeddingsSaved { sum, stats, ids: ids.to_vec(), type_ids: type_ids.to_vec(), positions })))
    }

    fn embeddings_ln_bwd(&self, saved: &Saved, tables: [&Tensor; 3], ln_weight: &Tensor, dy: &Tensor) -> Result<[Tensor; 5]> {
        let saved: &EmbeddingsSaved = saved.get("embeddings_ln")?;
        let [dsum, dw, db] = self.layer_norm_bwd(&saved.sum, ln_weight, &saved.stats, dy)?;
        let dword = self.embedding_bwd(&dsum, &saved.ids, tables[0].shape())?;
        let dtype = self.embedding_bwd(&dsum, &saved.type_ids, tables[1].shape())?;
        let dposition = self.embedding_bwd(&dsum, &saved.positions, tables[2].shape())?;
        Ok([dword, dtype, dposition, dw, db])
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
        let (batch, seq_len, c) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let dims = Dims { batch, seq_len, heads, head_dim: c / heads };
        with_float!(q.dtype(), "attention", |T| {
            let (out, saved) = attention_fwd((q.data::<T>()?, k.data::<T>()?, v.data::<T>()?), key_mask, dims, scale, window, dropout);
            Ok((Tensor::from_vec(out, q.shape())?, Saved::new(saved)))
        })
    }

    fn attention_bwd(&self, [q, _, _]: [&Tensor; 3], _output: &Tensor, saved: &Saved, dout: &Tensor) -> Result<[Tensor; 3]> {
        with_float!(q.dtype(), "attention", |T| {
            let saved: &AttentionSaved<T> = saved.get("attention")?;
            let (dq, dk, dv) = attention_bwd(saved, dout.data::<T>()?);
            Ok([Tensor::from_vec(dq, q.shape())?, Tensor::from_vec(dk, q.shape())?, Tensor::from_vec(dv, q.shape())?])
        })
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
        let (batch, seq_len, c) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let dims = RelativeDims { batch, seq_len, heads, head_dim: c / heads, positions: pq.shape()[0] };
        with_float!(q.dtype(), "relative_attention", |T| {
            let qkv = (q.data::<T>()?, k.data::<T>()?, v.data::<T>()?);
            let (out, saved) = relative_attention_fwd(qkv, (pq.data::<T>()?, pk.data::<T>()?), key_mask, rows, dims, scale, dropout);
            Ok((Tensor::from_vec(out, q.shape())?, Saved::new(saved)))
        })
    }

    fn relative_attention_bwd(&self, q: &Tensor, pq: &Tensor, saved: &Saved, dout: &Tensor) -> Result<[Tensor; 5]> {
        with_float!(q.dtype(), "relative_attention", |T| {
            let saved: &RelativeSaved<T> = saved.get("relative_attention")?;
            let [dq, dk, dv, dpq, dpk] = relative_attention_bwd(saved, dout.data::<T>()?);
            let (x, table) = (q.shape(), pq.shape());
            Ok([
                Tensor::from_vec(dq, x)?,
                Tensor::from_vec(dk, x)?,
                Tensor::from_vec(dv, x)?,
                Tensor::from_vec(dpq, table)?,
                Tensor::from_vec(dpk, table)?,
            ])
        })
    }

    fn packed_relative_attention_fwd(
        &self,
        [q, k, v]: [&Tensor; 3],
        [pq, pk]: [&Tensor; 2],
        lens: &[usize],
        rows: &[u32],
        heads: usize,
        scale: f64,
        dropout: Option<PackedDropout>,
    ) -> Result<Tensor> {
        with_float!(q.dtype(), "packed_relative_attention", |T| {
            let qkv = (q.data::<T>()?, k.data::<T>()?, v.data::<T>()?);
            let tables = (pq.data::<T>()?, pk.data::<T>()?);
            Tensor::from_vec(packed_relative_attention_fwd(qkv, tables, lens, rows, heads, scale, dropout), q.shape())
        })
    }

    fn packed_relative_attention_bwd(
        &self,
        [q, k, v]: [&Tensor; 3],
        [pq, pk]: [&Tensor; 2],
        dout: &Tensor,
        lens: &[usize],
        rows: &[u32],
        heads: usize,
        scale: f64,
        dropout: Option<PackedDropout>,
    ) -> Result<[Tensor; 5]> {
        with_float!(q.dtype(), "packed_relative_attention", |T| {
            let qkv = (q.data::<T>()?, k.data::<T>()?, v.data::<T>()?);
            let tables = (pq.data::<T>()?, pk.data::<T>()?);
            let [dq, dk, dv, dpq, dpk] =
                packed_relative_attention_bwd(qkv, tables, dout.data::<T>()?, lens, rows, heads, pq.shape()[0], scale, dropout);
            let (x, table) = (q.shape(), pq.shape());
            Ok([
                Tensor::from_vec(dq, x)?,
                Tensor::from_vec(dk, x)?,
                Tensor::from_vec(dv, x)?,
                Tensor::from_vec(dpq, table)?,
                Tensor::from_vec(dpk, table)?,
            ])
        })
    }

    fn packed_attention_fwd(
        &self,
        [q, k, v]: [&Tensor; 3],
        lens: &[usize],
        heads: usize,
        scale: f64,
        mode: PackedAttentionMode,
    ) -> Result<Tensor> {
        if q.dtype() == DType::F32 {
            let out = packed_attention_fwd_f32(q.data::<f32>()?, k.data::<f32>()?, v.data::<f32>()?, lens, heads, scale, mode);
            return Tensor::from_vec(out, q.shape());
        }
        with_float!(q.dtype(), "packed_attention", |T| Tensor::from_vec(
            packed_attention_fwd(q.data::<T>()?, k.data::<T>()?, v.data::<T>()?, lens, heads, scale, mode),
            q.shape()
        ))
    }

    fn packed_attention_qkv_fwd(&self, qkv: &Tensor, lens: &[usize], heads: usize, scale: f64) -> Result<Tensor> {
        let (n, width) = qkv.rows_cols();
        let shape = [n, width / 3];
        if qkv.dtype() == DType::F32 {
            return Tensor::from_vec(packed_attention_qkv_fwd_f32(qkv.data::<f32>()?, lens, heads, scale), &shape);
        }
        with_float!(qkv.dtype(), "packed_attention_qkv", |T| Tensor::from_vec(
            packed_attention_qkv_fwd(qkv.data::<T>()?, lens, heads, scale),
            &shape
        ))
    }

    fn packed_attention_bwd(
        &self,
        [q, k, v]: [&Tensor; 3],
        dout: &Tensor,
        lens: &[usize],
        heads: usize,
        scale: f64,
        mode: PackedAttentionMode,
    ) -> Result<[Tensor; 3]> {
        with_float!(dout.dtype(), "packed_attention", |T| {
            let (dq, dk, dv) =
                packed_attention_bwd(q.data::<T>()?, k.data::<T>()?, v.data::<T>()?, dout.data::<T>()?, lens, heads, scale, mode);
            Ok([Tensor::from_vec(dq, q.shape())?, Tensor::from_vec(dk, k.shape())?, Tensor::from_vec(dv, v.shape())?])
        })
    }

    fn permute_heads(&self, x: &Tensor, heads: usize, split: bool) -> Result<Tensor> {
        let s = x.shape();
        let (b, t, h, d, out_shape) = if split {
            (s[0], s[1], heads, s[2] / heads, vec![s[0], heads, s[1], s[2] / heads])
        } else {
            (s[0], s[2], s[1], s[3], vec![s[0], s[2], s[1] * s[3]])
        };
        with_float!(x.dtype(), "permute_heads", |T| Tensor::from_vec(layout::permute_heads(x.data::<T>()?, b, t, h, d, split), &out_shape))
    }

    fn masked_softmax_fwd(&self, scores: &Tensor, key_mask: &[u8]) -> Result<Tensor> {
        let (h, tq, tk) = (scores.shape()[1], scores.shape()[2], scores.shape()[3]);
        with_float!(scores.dtype(), "masked_softmax", |T| Tensor::from_vec(
            masked_softmax_fwd(scores.data::<T>()?, key_mask, h, tq, tk, None),
            scores.shape()
        ))
    }

    fn masked_softmax_bwd(&self, probs: &Tensor, dprobs: &Tensor, key_mask: &[u8]) -> Result<Tensor> {
        let (h, tq, tk) = (probs.shape()[1], probs.shape()[2], probs.shape()[3]);
        with_float!(probs.dtype(), "masked_softmax", |T| Tensor::from_vec(
            masked_softmax_bwd(probs.data::<T>()?, dprobs.data::<T>()?, key_mask, h, tq, tk, None),
            probs.shape()
        ))
    }

    fn gather_rows(&self, x: &Tensor, rows: &[usize]) -> Result<Tensor> {
        let (_, cols) = x.rows_cols();
        with_float!(x.dtype(), "gather_rows", |T| Tensor::from_vec(layout::gather_rows(x.data::<T>()?, cols, rows), &[rows.len(), cols]))
    }

    fn scatter_rows(&self, x: &Tensor, rows: &[usize], shape: &[usize]) -> Result<Tensor> {
        let cols = shape.last().copied().unwrap_or(0);
        let total: usize = shape[..shape.len() - 1].iter().product();
        with_float!(x.dtype(), "scatter_rows", |T| Tensor::from_vec(layout::scatter_rows(x.data::<T>()?, cols, rows, total), shape))
    }

    fn loss(&self, logits: &Tensor, kind: LossKind) -> Result<(Tensor, Tensor)> {
        let classes = *logits.shape().last().unwrap_or(&0);
        let (value, d) = with_float!(logits.dtype(), "loss", |T| {
            let x = logits.data::<T>()?;
            let (value, d) = match kind {
                LossKind::CrossEntropy { targets, class_weights } => {
                    loss::cross_entropy(x, targets, classes, class_weights.map(cast::<T>).as_deref())
                }
                LossKind::Focal { targets, gamma, alpha } => {
                    loss::focal_cross_entropy(x, targets, classes, gamma, alpha.map(cast::<T>).as_deref())
                }
                LossKind::BceWithLogits { targets, pos_weight: None } => loss::bce_with_logits(x, &cast::<T>(targets)),
                LossKind::BceWithLogits { targets, pos_weight: Some(pw) } => {
                    loss::bce_with_logits_weighted(x, &cast::<T>(targets), classes, Some(&cast::<T>(pw)))
                }
                LossKind::SigmoidFocal { targets, gamma, alpha, pos_weight } => {
                    loss::sigmoid_focal(x, &cast::<T>(targets), classes, gamma, alpha, pos_weight.map(cast::<T>).as_deref())
                }
                LossKind::Mse { targets } => loss::mse(x, &cast::<T>(targets)),
            };
            Ok((Tensor::from_vec(vec![value], &[1])?, Tensor::from_vec(d, logits.shape())?))
        })?;
        Ok((value, d))
    }

    fn grad_clip(&self, grads: &[&Tensor], max_norm: f64) -> Result<GradClip> {
        let squares = grads
            .iter()
            .map(|g| with_float!(g.dtype(), "grad_clip", |T| Ok::<f64, Error>(adamw::sum_of_squares(g.data::<T>()?))))
            .collect::<Result<Vec<f64>>>()?;
        let norm = squares.iter().sum::<f64>().sqrt();
        let factor = if !norm.is_finite() {
            f64::NAN
        } else if max_norm > 0.0 && norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        // F64, so the gradients' own type is what the factor is rounded to when applied.
        Ok(GradClip { norm, squares: Some(squares), factor: Tensor::from_vec(vec![factor], &[1])? })
    }

    fn adamw_update(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        copy: Option<&Tensor>,
        scalars: &AdamWScalars,
        clip: Option<&Tensor>,
    ) -> Result<()> {
        if copy.is_some() {
            return unsupported("adamw_update with a working copy", self.name());
        }
        let factor = clip.map(|c| c.to_f64_vec()[0]);
        if factor.is_some_and(|f| !f.is_finite()) {
            return Ok(());
        }
        with_float!(param.dtype(), "adamw_update", |T| {
            let hyper = adamw::AdamWHyper::<T>::new(scalars);
            let scale = factor.unwrap_or(1.0) as T;
            adamw::adamw_update(param.data_mut::<T>()?, grad.data::<T>()?, m.data_mut::<T>()?, v.data_mut::<T>()?, &hyper, scale);
            Ok::<(), Error>(())
        })
    }

    fn adamw_update_measured(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        scalars: &AdamWScalars,
        clip: Option<&Tensor>,
    ) -> Result<(f64, f64)> {
        let factor = clip.map(|c| c.to_f64_vec()[0]);
        if factor.is_some_and(|f| !f.is_finite()) {
            return Ok((0.0, 0.0));
        }
        with_float!(param.dtype(), "adamw_update_measured", |T| {
            let hyper = adamw::AdamWHyper::<T>::new(scalars);
            let scale = factor.unwrap_or(1.0) as T;
            Ok::<(f64, f64), Error>(adamw::adamw_update_measured(
                param.data_mut::<T>()?,
                grad.data::<T>()?,
                m.data_mut::<T>()?,
                v.data_mut::<T>()?,
                &hyper,
                scale,
            ))
        })
    }
}
