//! DeBERTa's disentangled self-attention over a padded batch, as one op.
//!
//! Per head, the score of query i and key j adds two relative-position
//! terms to the content term, all divided by the same scale:
//!
//! ```text
//! s[i, j] = (q_i·k_j + q_i·pk[r(i, j)] + k_j·pq[r(i, j)]) · scale
//! ```
//!
//! where pq and pk (R, D) are the relative embeddings projected by the
//! layer's own query and key projections (`share_att_key`), and
//! r(i, j) = clamp(bucket(i − j) + R/2, 0, R − 1) is the row they are read
//! at. transformers gathers the content-to-position product (T, R) at
//! r(i, j) and the position-to-content product at clamp(−bucket(j − i) +
//! R/2), then transposes it; the bucketing is odd, so both are r(i, j), and
//! r depends on i − j only: `rows` holds it for i − j = −(T−1) … T−1.
//!
//! The mask is query × key: a real query reads real keys; a padding query
//! has every score masked and is uniform over all T keys (transformers
//! fills every masked score with the dtype's minimum), with zero gradient.

use rayon::prelude::*;

use super::activation::scale;
use super::attention::{Dims, context_bwd};
use super::dropout::dropout_apply;
use super::layout::permute_heads;
use super::matmul::{Operand, batched_matmul, matmul};
use super::packed_attention::{assemble, head_matrix, masked, offsets, probability_mask, product, tasks};
use super::softmax::{masked_softmax_bwd, masked_softmax_fwd};
use super::{dot, sum};
use crate::backend::{AttentionDropout, PackedDropout};
use crate::tensor::Float;
use crate::tensor::pool::{self, Poolable};

/// The sizes of one call: batch, sequence, heads, head size, and the rows
/// of the relative tables (2 × the span).
#[derive(Clone, Copy, Debug)]
pub struct RelativeDims {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub positions: usize,
}

/// What forward keeps for backward: the per-head q, k, v (B·H, T, D), the
/// per-head position tables (H, R, D), the probabilities before and, with
/// dropout, after it.
pub struct RelativeSaved<T: Poolable> {
    heads_q: Vec<T>,
    heads_k: Vec<T>,
    heads_v: Vec<T>,
    heads_pq: Vec<T>,
    heads_pk: Vec<T>,
    probs: Vec<T>,
    dropped: Option<Vec<T>>,
    key_mask: Vec<u8>,
    rows: Vec<u32>,
    dims: RelativeDims,
    scale: f64,
    dropout: Option<AttentionDropout>,
}

impl<T: Poolable> Drop for RelativeSaved<T> {
    fn drop(&mut self) {
        for buffer in [&mut self.heads_q, &mut self.heads_k, &mut self.heads_v, &mut self.probs] {
            pool::give(std::mem::take(buffer));
        }
        if let Some(dropped) = self.dropped.take() {
            pool::give(dropped);
        }
    }
}

/// The table row of query i and key j in a sequence of `t` (`rows` has 2t − 1 entries).
#[inline]
fn row_of(rows: &[u32], t: usize, i: usize, j: usize) -> usize {
    rows[i + t - 1 - j] as usize
}

/// The table rows a sequence's distances read: a contiguous run, as the
/// bucket grows with the distance (`rows` runs from distance −(T−1) up).
fn used_rows(rows: &[u32]) -> std::ops::Range<usize> {
    match (rows.first(), rows.last()) {
        (Some(&lo), Some(&hi)) => lo as usize..hi as usize + 1,
        _ => 0..0,
    }
}

/// Whether query `i` of batch row `b` is padding (its whole row is masked).
#[inline]
fn padding_query(key_mask: &[u8], t: usize, row: usize, heads: usize) -> bool {
    let (b, i) = (row / (heads * t), row % t);
    key_mask[b * t + i] == 0
}

/// q, k, v (B, T, H·D), pq, pk (R, H·D), key mask (B·T), `rows` (2T − 1)
/// -> context (B, T, H·D) and the saved state.
pub fn relative_attention_fwd<T: Float>(
    (q, k, v): (&[T], &[T], &[T]),
    (pq, pk): (&[T], &[T]),
    key_mask: &[u8],
    rows: &[u32],
    dims: RelativeDims,
    scale_factor: f64,
    dropout: Option<AttentionDropout>,
) -> (Vec<T>, RelativeSaved<T>) {
    let RelativeDims { batch, seq_len: t, heads: h, head_dim: d, positions: r } = dims;
    let split = |x: &[T]| permute_heads(x, batch, t, h, d, true);
    let (heads_q, heads_k, heads_v) = (split(q), split(k), split(v));
    let (heads_pq, heads_pk) = (permute_heads(pq, 1, r, h, d, true), permute_heads(pk, 1, r, h, d, true));
    let groups = batch * h;
    let mut content = pool::take::<T>(groups * t * t);
    batched_matmul(groups, &heads_q, t, d, false, &heads_k, t, d, true, &mut content, false);
    // q·pkᵀ and k·pqᵀ, (B·H, T, U) over the U table rows the distances read.
    let used = used_rows(rows);
    let u = used.len();
    let by_position = |x: &[T], table: &[T]| {
        let mut out = pool::take::<T>(groups * t * u);
        out.par_chunks_mut((t * u).max(1)).enumerate().for_each(|(g, out_g)| {
            let head = g % h;
            let x_g = Operand::new(&x[g * t * d..(g + 1) * t * d], t, d, false);
            let table_h = Operand::new(&table[(head * r + used.start) * d..(head * r + used.end) * d], u, d, true);
            matmul(x_g, table_h, out_g, false, false);
        });
        out
    };
    let c2p = by_position(&heads_q, &heads_pk);
    let p2c = by_position(&heads_k, &heads_pq);
    let first = used.start;
    let factor = T::from_f64(scale_factor);
    let mut scores = pool::take::<T>(groups * t * t);
    super::for_each_row_mut(&mut scores, t, |row, s| {
        let (g, i) = (row / t, row % t);
        let c = &content[row * t..(row + 1) * t];
        let c2p_i = &c2p[row * u..(row + 1) * u];
        let p2c_g = &p2c[g * t * u..(g + 1) * t * u];
        for j in 0..t {
            let at = row_of(rows, t, i, j) - first;
            s[j] = (c[j] + c2p_i[at] + p2c_g[j * u + at]) * factor;
        }
    });
    pool::give(content);
    pool::give(c2p);
    pool::give(p2c);
    let mut probs = masked_softmax_fwd(&scores, key_mask, h, t, t, None);
    pool::give(scores);
    let uniform = T::ONE / T::from_f64(t.max(1) as f64);
    super::for_each_row_mut(&mut probs, t, |row, p| {
        if padding_query(key_mask, t, row, h) {
            p.fill(uniform);
        }
    });
    let dropped = dropout.map(|drop| dropout_apply(&probs, drop.p, drop.key));
    let mut context = pool::take::<T>(groups * t * d);
    batched_matmul(groups, dropped.as_deref().unwrap_or(&probs), t, t, false, &heads_v, t, d, false, &mut context, false);
    let out = permute_heads(&context, batch, t, h, d, false);
    pool::give(context);
    let saved = RelativeSaved {
        heads_q,
        heads_k,
        heads_v,
        heads_pq,
        heads_pk,
        probs,
        dropped,
        key_mask: key_mask.to_vec(),
        rows: rows.to_vec(),
        dims,
        scale: scale_factor,
        dropout,
    };
    (out, saved)
}

/// dout (B, T, H·D) -> (dq, dk, dv) (B, T, H·D) and (dpq, dpk) (R, H·D).
pub fn relative_attention_bwd<T: Float>(saved: &RelativeSaved<T>, dout: &[T]) -> [Vec<T>; 5] {
    let RelativeDims { batch, seq_len: t, heads: h, head_dim: d, positions: r } = saved.dims;
    let groups = batch * h;
    let dims = Dims { batch, seq_len: t, heads: h, head_dim: d };
    let (dprobs, dheads_v) = context_bwd(dout, dims, (&saved.probs, saved.dropped.as_deref()), &saved.heads_v, saved.dropout);
    let mut dsoftmax = masked_softmax_bwd(&saved.probs, &dprobs, &saved.key_mask, h, t, t, None);
    pool::give(dprobs);
    // A padding query's row is the constant uniform row: no gradient.
    super::for_each_row_mut(&mut dsoftmax, t, |row, ds| {
        if padding_query(&saved.key_mask, t, row, h) {
            ds.fill(T::ZERO);
        }
    });
    let dscores = scale(&dsoftmax, T::from_f64(saved.scale));
    pool::give(dsoftmax);

    // The content term: dQ = dS·K, dK = dSᵀ·Q.
    let mut dheads_q = pool::take::<T>(groups * t * d);
    batched_matmul(groups, &dscores, t, t, false, &saved.heads_k, t, d, false, &mut dheads_q, false);
    let mut dheads_k = pool::take::<T>(groups * t * d);
    batched_matmul(groups, &dscores, t, t, true, &saved.heads_q, t, d, false, &mut dheads_k, false);
    // The relative terms, through the gathers' adjoints: per group,
    // by_query[i, r] = Σ_j dS[i, j] over the keys j read at row r, and
    // by_key[j, r] = Σ_i dS[i, j] likewise (B·H, T, R).
    let used = used_rows(&saved.rows);
    let u = used.len();
    let mut by_query = pool::take::<T>(groups * t * u);
    let mut by_key = pool::take::<T>(groups * t * u);
    by_query.par_chunks_mut((t * u).max(1)).zip(by_key.par_chunks_mut((t * u).max(1))).enumerate().for_each(|(g, (bq, bk))| {
        bq.fill(T::ZERO);
        bk.fill(T::ZERO);
        let ds_g = &dscores[g * t * t..(g + 1) * t * t];
        for i in 0..t {
            for j in 0..t {
                let (at, value) = (row_of(&saved.rows, t, i, j) - used.start, ds_g[i * t + j]);
                bq[i * u + at] += value;
                bk[j * u + at] += value;
            }
        }
    });
    pool::give(dscores);
    // dQ += by_query·pk_h, dK += by_key·pq_h.
    let add_through = |dx: &mut [T], by: &[T], table: &[T]| {
        dx.par_chunks_mut((t * d).max(1)).enumerate().for_each(|(g, dx_g)| {
            let head = g % h;
            let by_g = Operand::new(&by[g * t * u..(g + 1) * t * u], t, u, false);
            let table_h = Operand::new(&table[(head * r + used.start) * d..(head * r + used.end) * d], u, d, false);
            matmul(by_g, table_h, dx_g, true, false);
        });
    };
    add_through(&mut dheads_q, &by_query, &saved.heads_pk);
    add_through(&mut dheads_k, &by_key, &saved.heads_pq);
    // dpk_h = Σ_b by_queryᵀ·q, dpq_h = Σ_b by_keyᵀ·k, (H, R, D).
    let table_grad = |by: &[T], x: &[T]| {
        let mut out = vec![T::ZERO; h * r * d];
        out.par_chunks_mut((r * d).max(1)).enumerate().for_each(|(head, out_h)| {
            let out_used = &mut out_h[used.start * d..used.end * d];
            for b in 0..batch {
                let g = b * h + head;
                let by_g = Operand::new(&by[g * t * u..(g + 1) * t * u], t, u, true);
                let x_g = Operand::new(&x[g * t * d..(g + 1) * t * d], t, d, false);
                matmul(by_g, x_g, out_used, true, false);
            }
        });
        out
    };
    let dheads_pk = table_grad(&by_query, &saved.heads_q);
    let dheads_pq = table_grad(&by_key, &saved.heads_k);
    pool::give(by_query);
    pool::give(by_key);
    let merge = |x: Vec<T>| {
        let merged = permute_heads(&x, batch, t, h, d, false);
        pool::give(x);
        merged
    };
    let dpq = permute_heads(&dheads_pq, 1, r, h, d, false);
    let dpk = permute_heads(&dheads_pk, 1, r, h, d, false);
    [merge(dheads_q), merge(dheads_k), merge(dheads_v), dpq, dpk]
}

// ---------- over packed sequences ----------

/// One head of one sequence of `len` rows: q, k, v (len, d), and the rows
/// `first..first + pq.len() / d` of the position tables, the only ones its
/// distances read (pq, pk (used, d)).
struct HeadInputs<T> {
    first: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    pq: Vec<T>,
    pk: Vec<T>,
}

/// The probabilities (len, len) of one head of one sequence, every key
/// real: the three score terms as in [`relative_attention_fwd`], then softmax.
fn packed_probabilities<T: Float>(x: &HeadInputs<T>, len: usize, d: usize, rows: &[u32], t_rows: usize, scale: T) -> Vec<T> {
    let r = x.pq.len() / d;
    let mut s = product(Operand::new(&x.q, len, d, false), Operand::new(&x.k, len, d, true), len, len);
    let c2p = product(Operand::new(&x.q, len, d, false), Operand::new(&x.pk, r, d, true), len, r);
    let p2c = product(Operand::new(&x.k, len, d, false), Operand::new(&x.pq, r, d, true), len, r);
    for (i, row) in s.chunks_mut(len).enumerate() {
        let mut max = T::MIN;
        for (j, value) in row.iter_mut().enumerate() {
            let at = row_of(rows, t_rows, i, j) - x.first;
            *value = (*value + c2p[i * r + at] + p2c[j * r + at]) * scale;
            max = max.max(*value);
        }
        for value in row.iter_mut() {
            *value = (*value - max).exp();
        }
        let inv = T::ONE / sum(row);
        row.iter_mut().for_each(|v| *v *= inv);
    }
    s
}

/// The inputs of task (sequence s, head h). The distances of a sequence
/// of `len` read a contiguous run of table rows (the buckets grow with the
/// distance), often far fewer than R: at T = 128 with 256 buckets, 255 of 512.
#[allow(clippy::too_many_arguments)]
fn head_inputs<T: Float>(
    (q, k, v): (&[T], &[T], &[T]),
    (pq, pk): (&[T], &[T]),
    (rows, t_rows): (&[u32], usize),
    start: usize,
    len: usize,
    cols: usize,
    h: usize,
    d: usize,
) -> HeadInputs<T> {
    let span = start * cols..(start + len) * cols;
    let [q, k, v] = [q, k, v].map(|x| head_matrix(&x[span.clone()], len, cols, h, d));
    let (first, last) = (row_of(rows, t_rows, 0, len - 1), row_of(rows, t_rows, len - 1, 0));
    let used = &(first * cols..(last + 1) * cols);
    let [pq, pk] = [pq, pk].map(|x| head_matrix(&x[used.clone()], last + 1 - first, cols, h, d));
    HeadInputs { first, q, k, v, pq, pk }
}

/// q, k, v (N, H·D) holding sequences of `lens` rows back to back, pq, pk
/// (R, H·D), `rows` (2·T_rows − 1, T_rows ≥ every length) -> context
/// (N, H·D): each sequence attends to its own rows, as the padded op does
/// at every real position, with probability dropout drawn at each
/// element's padded place; one task per (sequence, head).
#[allow(clippy::too_many_arguments)]
pub fn packed_relative_attention_fwd<T: Float>(
    qkv: (&[T], &[T], &[T]),
    tables: (&[T], &[T]),
    lens: &[usize],
    rows: &[u32],
    heads: usize,
    scale: f64,
    dropout: Option<PackedDropout>,
) -> Vec<T> {
    let n: usize = lens.iter().sum();
    let cols = qkv.0.len() / n.max(1);
    let (d, t_rows) = (cols / heads.max(1), rows.len().div_ceil(2));
    let starts = offsets(lens);
    let scale = T::from_f64(scale);
    let blocks: Vec<Vec<T>> = tasks(lens, heads)
        .into_par_iter()
        .map(|(s, h)| {
            let len = lens[s];
            let x = head_inputs(qkv, tables, (rows, t_rows), starts[s], len, cols, h, d);
            let p = packed_probabilities(&x, len, d, rows, t_rows, scale);
            let p = match &dropout {
                Some(drop) => masked(&p, &probability_mask(len, (s, h, heads), drop)),
                None => p,
            };
            product(Operand::new(&p, len, len, false), Operand::new(&x.v, len, d, false), len, d)
        })
        .collect();
    assemble(blocks, lens, heads, cols, d)
}

/// Backward of [`packed_relative_attention_fwd`], recomputing the
/// probabilities: dout (N, H·D) -> [dq, dk, dv] (N, H·D), [dpq, dpk] (R, H·D).
#[allow(clippy::too_many_arguments)]
pub fn packed_relative_attention_bwd<T: Float>(
    qkv: (&[T], &[T], &[T]),
    tables: (&[T], &[T]),
    dout: &[T],
    lens: &[usize],
    rows: &[u32],
    heads: usize,
    positions: usize,
    scale: f64,
    dropout: Option<PackedDropout>,
) -> [Vec<T>; 5] {
    let n: usize = lens.iter().sum();
    let cols = qkv.0.len() / n.max(1);
    let (d, r, t_rows) = (cols / heads.max(1), positions, rows.len().div_ceil(2));
    let starts = offsets(lens);
    let scale = T::from_f64(scale);
    let work = tasks(lens, heads);
    let grads: Vec<([Vec<T>; 5], usize)> = work
        .par_iter()
        .map(|&(s, h)| {
            let len = lens[s];
            let x = head_inputs(qkv, tables, (rows, t_rows), starts[s], len, cols, h, d);
            let dout = head_matrix(&dout[starts[s] * cols..(starts[s] + len) * cols], len, cols, h, d);
            let p = packed_probabilities(&x, len, d, rows, t_rows, scale);
            let r = x.pq.len() / d;
            let mask = dropout.as_ref().map(|drop| probability_mask(len, (s, h, heads), drop));
            let dropped = mask.as_ref().map(|m| masked(&p, m));
            let dv = product(Operand::new(dropped.as_deref().unwrap_or(&p), len, len, true), Operand::new(&dout, len, d, false), len, d);
            let ds = product(Operand::new(&dout, len, d, false), Operand::new(&x.v, len, d, true), len, len);
            // The gradient of the dropped probabilities, masked back onto p.
            let mut ds = match &mask {
                Some(m) => masked(&ds, m),
                None => ds,
            };
            let (mut by_query, mut by_key) = (vec![T::ZERO; len * r], vec![T::ZERO; len * r]);
            for (i, (row, p_row)) in ds.chunks_mut(len).zip(p.chunks(len)).enumerate() {
                let centre = dot(row, p_row);
                for (j, (value, &pij)) in row.iter_mut().zip(p_row).enumerate() {
                    *value = pij * (*value - centre) * scale;
                    let at = row_of(rows, t_rows, i, j) - x.first;
                    by_query[i * r + at] += *value;
                    by_key[j * r + at] += *value;
                }
            }
            let mut dq = product(Operand::new(&ds, len, len, false), Operand::new(&x.k, len, d, false), len, d);
            matmul(Operand::new(&by_query, len, r, false), Operand::new(&x.pk, r, d, false), &mut dq, true, false);
            let mut dk = product(Operand::new(&ds, len, len, true), Operand::new(&x.q, len, d, false), len, d);
            matmul(Operand::new(&by_key, len, r, false), Operand::new(&x.pq, r, d, false), &mut dk, true, false);
            let dpk = product(Operand::new(&by_query, len, r, true), Operand::new(&x.q, len, d, false), r, d);
            let dpq = product(Operand::new(&by_key, len, r, true), Operand::new(&x.k, len, d, false), r, d);
            ([dq, dk, dv, dpq, dpk], x.first)
        })
        .collect();
    // The tables' gradients: each head's sum over the sequences, as (R, H·D).
    let (mut dpq, mut dpk) = (vec![T::ZERO; r * cols], vec![T::ZERO; r * cols]);
    for (&(_, h), (g, first)) in work.iter().zip(&grads) {
        for (table, block) in [(&mut dpq, &g[3]), (&mut dpk, &g[4])] {
            for (row, values) in table[first * cols..].chunks_mut(cols).zip(block.chunks(d)) {
                row[h * d..(h + 1) * d].iter_mut().zip(values).for_each(|(a, &b)| *a += b);
            }
        }
    }
    let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
    for ([q, k, v, _, _], _) in grads {
        dq.push(q);
        dk.push(k);
        dv.push(v);
    }
    [assemble(dq, lens, heads, cols, d), assemble(dk, lens, heads, cols, d), assemble(dv, lens, heads, cols, d), dpq, dpk]
}
