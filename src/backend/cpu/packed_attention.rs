//! Self-attention over packed sequences: a batch's real tokens as (N, H·D)
//! rows, each sequence a contiguous run of rows that attends only to itself.
//! No padding position is computed, so a batch of mixed lengths costs what
//! its tokens cost. At every real position it is the function of the padded
//! path (split heads, scores · scale, softmax over the real keys, context).
//!
//! The work is one task per (sequence, head): a long lone sequence still
//! uses every core. The probabilities are recomputed in backward rather than
//! kept, since they are cheap next to the rest of a layer.

use rayon::prelude::*;

use super::dropout::MaskDraw;
use super::fused_attention::{self, AttentionPath, HeadDropout, HeadInput};
use super::matmul::{Operand, matmul};
use super::{dot, sum};
use crate::backend::{PackedAttentionMode, PackedDropout};
use crate::tensor::Float;

/// Where each sequence starts, in rows.
pub(super) fn offsets(lens: &[usize]) -> Vec<usize> {
    lens.iter()
        .scan(0, |start, &len| {
            let here = *start;
            *start += len;
            Some(here)
        })
        .collect()
}

/// Every (sequence, head) pair: the unit of work.
pub(super) fn tasks(lens: &[usize], heads: usize) -> Vec<(usize, usize)> {
    (0..lens.len()).filter(|&s| lens[s] > 0).flat_map(|s| (0..heads).map(move |h| (s, h))).collect()
}

/// Head `h` of a sequence's rows (each `cols` wide, heads of `d`), copied
/// into a contiguous (len, d) matrix for the products.
pub(super) fn head_matrix<T: Float>(x: &[T], len: usize, cols: usize, h: usize, d: usize) -> Vec<T> {
    let mut m = Vec::with_capacity(len * d);
    for i in 0..len {
        m.extend_from_slice(&x[i * cols + h * d..i * cols + (h + 1) * d]);
    }
    m
}

/// c = a' · b' for small operands, on this thread (the caller runs one
/// task per sequence and head in parallel).
pub(super) fn product<T: Float>(a: Operand<T>, b: Operand<T>, rows: usize, cols: usize) -> Vec<T> {
    let mut c = vec![T::ZERO; rows * cols];
    matmul(a, b, &mut c, false, false);
    c
}

/// The attention probabilities of one head of one sequence: (len, len),
/// row i the softmax over keys j of scale · q_i · k_j; q, k are (len, d).
/// With a window of half-width w, row i covers keys |i − j| ≤ w only (the
/// others get 0, so backward's formula needs no mask of its own).
fn probabilities<T: Float>(q: &[T], k: &[T], len: usize, d: usize, scale: T, window: Option<usize>) -> Vec<T> {
    let mut p = product(Operand::new(q, len, d, false), Operand::new(k, len, d, true), len, len);
    for (i, row) in p.chunks_mut(len).enumerate() {
        let (lo, hi) = match window {
            Some(w) => (i.saturating_sub(w), (i + w + 1).min(len)),
            None => (0, len),
        };
        softmax_band(row, lo, hi, scale);
    }
    p
}

/// Raw scores `row` -> probabilities: the softmax of scale · row over
/// [lo, hi), 0 elsewhere. Only the band is exponentiated, in straight
/// loops that vectorise.
fn softmax_band<T: Float>(row: &mut [T], lo: usize, hi: usize, scale: T) {
    row[..lo].fill(T::ZERO);
    row[hi..].fill(T::ZERO);
    let band = &mut row[lo..hi];
    let mut lanes = [T::MIN; 8];
    for (j, s) in band.iter_mut().enumerate() {
        *s *= scale;
        lanes[j % 8] = lanes[j % 8].max(*s);
    }
    let max = lanes.iter().copied().fold(T::MIN, T::max);
    for s in band.iter_mut() {
        *s = (*s - max).exp();
    }
    let inv = T::ONE / sum(band);
    for s in band.iter_mut() {
        *s *= inv;
    }
}

/// Queries per block of the banded forward.
const BAND_BLOCK: usize = 64;

/// Whether a window of half-width `window` over `len` tokens is narrow
/// enough for the banded forward to skip work.
fn banded(window: Option<usize>, len: usize) -> Option<usize> {
    window.filter(|&w| BAND_BLOCK + 2 * w < len)
}

/// The context of one head of one sequence under a window of half-width
/// w, computing only the keys a block of BAND_BLOCK queries can see:
/// q, k, v (len, d) -> (len, d). The same function as
/// probabilities · v, with (BAND_BLOCK + 2w) keys per block instead of len.
fn banded_context<T: Float>(q: &[T], k: &[T], v: &[T], len: usize, d: usize, scale: T, w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(len * d);
    for r0 in (0..len).step_by(BAND_BLOCK) {
        let r1 = (r0 + BAND_BLOCK).min(len);
        let (k0, k1) = (r0.saturating_sub(w), (r1 + w).min(len));
        let (rows, span) = (r1 - r0, k1 - k0);
        let mut p = product(Operand::new(&q[r0 * d..r1 * d], rows, d, false), Operand::new(&k[k0 * d..k1 * d], span, d, true), rows, span);
        for (r, row) in p.chunks_mut(span).enumerate() {
            let i = r0 + r;
            softmax_band(row, i.saturating_sub(w) - k0, (i + w + 1).min(len) - k0, scale);
        }
        out.extend(product(Operand::new(&p, rows, span, false), Operand::new(&v[k0 * d..k1 * d], span, d, false), rows, d));
    }
    out
}

/// The dropout of one head's probabilities (len, len) of sequence s, head
/// h: each element's factor, 1/(1 − p) or 0, drawn at its place in the
/// padded (B·H, T, T) layout. Forward multiplies p by it, backward the
/// gradient of the dropped probabilities (one draw serves both there).
pub(super) fn probability_mask<T: Float>(len: usize, (s, h, heads): (usize, usize, usize), drop: &PackedDropout) -> Vec<T> {
    let draw = MaskDraw::new(drop.dropout.p, drop.dropout.key);
    let (t, keep_scale) = (drop.padded_len, draw.keep_scale::<T>());
    let mut mask = Vec::with_capacity(len * len);
    for i in 0..len {
        let base = (((s * heads + h) * t + i) * t) as u64;
        mask.extend((0..len).map(|j| if draw.keeps(base + j as u64) { keep_scale } else { T::ZERO }));
    }
    mask
}

/// x ∘ mask, element by element.
pub(super) fn masked<T: Float>(x: &[T], mask: &[T]) -> Vec<T> {
    x.iter().zip(mask).map(|(&v, &m)| v * m).collect()
}

/// Writes per-(sequence, head) blocks (len, d), in task order, into
/// (N, H·D) rows; one parallel task per sequence.
pub(super) fn assemble<T: Float>(blocks: Vec<Vec<T>>, lens: &[usize], heads: usize, cols: usize, d: usize) -> Vec<T> {
    let n: usize = lens.iter().sum();
    let mut out = crate::tensor::pool::take::<T>(n * cols);
    let mut per_sequence = Vec::with_capacity(lens.len());
    let (mut rest, mut blocks) = (&mut out[..], blocks.into_iter());
    for &len in lens.iter().filter(|&&l| l > 0) {
        let (rows, tail) = std::mem::take(&mut rest).split_at_mut(len * cols);
        rest = tail;
        per_sequence.push((rows, blocks.by_ref().take(heads).collect::<Vec<_>>()));
    }
    per_sequence.into_par_iter().for_each(|(rows, head_blocks)| {
        for (h, block) in head_blocks.iter().enumerate() {
            for (row, values) in rows.chunks_mut(cols).zip(block.chunks(d)) {
                row[h * d..(h + 1) * d].copy_from_slice(values);
            }
        }
    });
    out
}

/// q, k, v (N, heads·D), `lens` summing to N (sequence s is batch row s),
/// an optional window and probability dropout -> context (N, heads·D).
pub fn packed_attention_fwd<T: Float>(
    q: &[T],
    k: &[T],
    v: &[T],
    lens: &[usize],
    heads: usize,
    scale: f64,
    PackedAttentionMode { window, dropout }: PackedAttentionMode,
) -> Vec<T> {
    let n: usize = lens.iter().sum();
    let cols = q.len() / n.max(1);
    let d = cols / heads.max(1);
    let starts = offsets(lens);
    let scale = T::from_f64(scale);
    let blocks: Vec<Vec<T>> = tasks(lens, heads)
        .into_par_iter()
        .map(|(s, h)| {
            let (len, rows) = (lens[s], starts[s] * cols..(starts[s] + lens[s]) * cols);
            let [q, k, v] = [q, k, v].map(|x| head_matrix(&x[rows.clone()], len, cols, h, d));
            if let (Some(w), None) = (banded(window, len), dropout) {
                return banded_context(&q, &k, &v, len, d, scale, w);
            }
            let p = probabilities(&q, &k, len, d, scale, window);
            let p = match &dropout {
                Some(drop) => masked(&p, &probability_mask(len, (s, h, heads), drop)),
                None => p,
            };
            product(Operand::new(&p, len, len, false), Operand::new(&v, len, d, false), len, d)
        })
        .collect();
    assemble(blocks, lens, heads, cols, d)
}

/// The f32 forward on the fastest path this CPU has ([`fused_attention::best_path`]).
pub fn packed_attention_fwd_f32(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lens: &[usize],
    heads: usize,
    scale: f64,
    mode: PackedAttentionMode,
) -> Vec<f32> {
    packed_attention_fwd_on(fused_attention::best_path(), (q, k, v), lens, heads, scale, mode)
}

/// As [`packed_attention_fwd`] in f32, on `path` where it is available and
/// serves the call (its head size, and a window, if any, that reaches every
/// key of every sequence), on the generic path otherwise.
pub fn packed_attention_fwd_on(
    path: AttentionPath,
    (q, k, v): (&[f32], &[f32], &[f32]),
    lens: &[usize],
    heads: usize,
    scale: f64,
    mode: PackedAttentionMode,
) -> Vec<f32> {
    let n: usize = lens.iter().sum();
    let cols = q.len() / n.max(1);
    let sees_every_key = |len: usize| mode.window.is_none_or(|w| w + 1 >= len);
    if !fused_serves(path, cols, heads) || !lens.iter().all(|&l| sees_every_key(l)) {
        return packed_attention_fwd(q, k, v, lens, heads, scale, mode);
    }
    fused_context(path, lens, heads, cols, scale, mode.dropout.as_ref(), |rows| [&q[rows.clone()], &k[rows.clone()], &v[rows]], cols)
}

/// q, k and v side by side, (N, 3·heads·D) rows (one fused projection's
/// output), `lens` summing to N -> context (N, heads·D); no window, no
/// dropout. The generic path, on the three split apart.
pub fn packed_attention_qkv_fwd<T: Float>(qkv: &[T], lens: &[usize], heads: usize, scale: f64) -> Vec<T> {
    let n: usize = lens.iter().sum();
    let width = qkv.len() / n.max(1) / 3;
    let part =
        |p: usize| -> Vec<T> { qkv.chunks(3 * width.max(1)).flat_map(|row| row[p * width..(p + 1) * width].iter().copied()).collect() };
    packed_attention_fwd(&part(0), &part(1), &part(2), lens, heads, scale, PackedAttentionMode::default())
}

/// As [`packed_attention_qkv_fwd`] in f32: the fused kernel reads q, k and v
/// in place where it serves the heads, the generic path runs elsewhere.
pub fn packed_attention_qkv_fwd_f32(qkv: &[f32], lens: &[usize], heads: usize, scale: f64) -> Vec<f32> {
    let n: usize = lens.iter().sum();
    let stride = qkv.len() / n.max(1);
    let (width, path) = (stride / 3, fused_attention::best_path());
    if !fused_serves(path, width, heads) {
        return packed_attention_qkv_fwd(qkv, lens, heads, scale);
    }
    // Sequence rows r0..r1 of the (N, 3·width) rows begin at r0·stride; k and
    // v start width and 2·width further in, each row `stride` apart.
    fused_context(
        path,
        lens,
        heads,
        width,
        scale,
        None,
        |rows| [&qkv[rows.clone()], &qkv[rows.start + width..rows.end], &qkv[rows.start + 2 * width..rows.end]],
        stride,
    )
}

/// Whether the fused kernel on `path` runs rows `width` wide of `heads` heads.
fn fused_serves(path: AttentionPath, width: usize, heads: usize) -> bool {
    let d = width / heads.max(1);
    path == AttentionPath::Avx512 && path.available() && path.serves(d) && d * heads == width
}

/// The fused kernel over every (sequence, head) -> context (N, width):
/// `read` gives the q, k and v slices that begin at a sequence's first row
/// from the range of its elements in rows `stride` wide.
#[allow(clippy::too_many_arguments)] // the layout (lens, heads, width, stride), the scale, dropout and the reader
fn fused_context<'a>(
    path: AttentionPath,
    lens: &[usize],
    heads: usize,
    width: usize,
    scale: f64,
    dropout: Option<&PackedDropout>,
    read: impl Fn(std::ops::Range<usize>) -> [&'a [f32]; 3] + Sync,
    stride: usize,
) -> Vec<f32> {
    let (d, starts) = (width / heads, offsets(lens));
    let blocks: Vec<Vec<f32>> = tasks(lens, heads)
        .into_par_iter()
        .map(|(s, h)| {
            let [q, k, v] = read(starts[s] * stride..(starts[s] + lens[s]) * stride);
            let input = HeadInput { q, k, v, len: lens[s], cols: stride, head: h, head_dim: d, scale: scale as f32 };
            let dropout = dropout.map(|dropout| HeadDropout { dropout, sequence: s, head: h, heads });
            fused_attention::head_context(path, input, dropout)
        })
        .collect();
    assemble(blocks, lens, heads, width, d)
}

/// Backward of [`packed_attention_fwd`]: from dout (N, heads·D), returns
/// (dq, dk, dv). With p the probabilities, p' = mask(p) after dropout (p
/// without it) and dp = mask(dout · vᵀ): dv = p'ᵀ · dout,
/// ds = p ∘ (dp − rowsum(dp ∘ p)), dq = scale · ds · k, dk = scale · dsᵀ · q.
#[allow(clippy::too_many_arguments)] // q, k, v, dout, the layout (lens, heads), the scale and the window
pub fn packed_attention_bwd<T: Float>(
    q: &[T],
    k: &[T],
    v: &[T],
    dout: &[T],
    lens: &[usize],
    heads: usize,
    scale: f64,
    PackedAttentionMode { window, dropout }: PackedAttentionMode,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let n: usize = lens.iter().sum();
    let cols = q.len() / n.max(1);
    let d = cols / heads.max(1);
    let starts = offsets(lens);
    let scale = T::from_f64(scale);
    let grads: Vec<[Vec<T>; 3]> = tasks(lens, heads)
        .into_par_iter()
        .map(|(s, h)| {
            let (len, rows) = (lens[s], starts[s] * cols..(starts[s] + lens[s]) * cols);
            let [q, k, v, dout] = [q, k, v, dout].map(|x| head_matrix(&x[rows.clone()], len, cols, h, d));
            let p = probabilities(&q, &k, len, d, scale, window);
            let mask = dropout.as_ref().map(|drop| probability_mask(len, (s, h, heads), drop));
            let dropped = mask.as_ref().map(|m| masked(&p, m));
            let dv = product(Operand::new(dropped.as_deref().unwrap_or(&p), len, len, true), Operand::new(&dout, len, d, false), len, d);
            let ds = product(Operand::new(&dout, len, d, false), Operand::new(&v, len, d, true), len, len);
            // The gradient of p' is masked back onto p (the same mask and scale).
            let mut ds = match &mask {
                Some(m) => masked(&ds, m),
                None => ds,
            };
            for (row, p_row) in ds.chunks_mut(len).zip(p.chunks(len)) {
                let centre = dot(row, p_row);
                for (x, &pij) in row.iter_mut().zip(p_row) {
                    *x = pij * (*x - centre) * scale;
                }
            }
            let dq = product(Operand::new(&ds, len, len, false), Operand::new(&k, len, d, false), len, d);
            let dk = product(Operand::new(&ds, len, len, true), Operand::new(&q, len, d, false), len, d);
            [dq, dk, dv]
        })
        .collect();
    let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
    for [q, k, v] in grads {
        dq.push(q);
        dk.push(k);
        dv.push(v);
    }
    (assemble(dq, lens, heads, cols, d), assemble(dk, lens, heads, cols, d), assemble(dv, lens, heads, cols, d))
}
