//! Fused attention launchers (kernels/attention.cu): scores, masked softmax,
//! dropout on the probabilities and the context product in one pass per
//! (batch, head), flash style; the (B, H, T, T) probabilities never reach
//! global memory. The backward recomputes them from q, k and the saved lse.
//!
//! Semantics are those of the CPU encoder (model/bert.rs): per head,
//! `softmax(q·kᵀ·scale, key_mask)` with masked keys at exactly 0 and an
//! all-masked batch row uniform (its scores gradient is 0), then dropout
//! with the counter-based RNG at offset ((b·H + h)·T + i)·T + j, then ·v.
//! An optional sliding window ([`AttentionWindow`], ModernBERT's local
//! layers) masks keys with |i − j| > w too; a query whose window holds no
//! real key is uniform over all T keys, as on the CPU.
//!
//! Launch branches, by head_dim and dtype ([`path`]):
//! - BF16 at head_dim 32 and 64 (MiniLM, bert-base): the tensor-core
//!   kernels `attention_tc_d<D>_*_bf16` (kernels/attention_tc.cu, WMMA with
//!   f32 accumulation), 128 threads (4 warps of 16 rows) per block;
//! - F32 at every head dim, and BF16 at 8 and 16: the scalar kernels
//!   `attention_d<D>_*_<dtype>` (kernels/attention.cu); `d8`, `d16`, `d32`
//!   give each row one thread, `d64` two lanes ([`split`]), 64·split threads.
//!
//! Every kernel runs B·H·ceil(T/64) blocks; a block owns 64 query rows
//! (forward, dq) or 64 key rows (dk/dv) and streams the other side through
//! shared memory. Any other head_dim is an error.

use super::{expect, expect_float};
use crate::device::{Device, DeviceBuffer, Elem, KernelArgs, LaunchShape};
use crate::error::{Error, Result};

/// Rows (queries or keys) a block owns; also the tile of the streamed side.
pub const ROWS: usize = 64;
/// The head dims the kernels are instantiated for.
pub const HEAD_DIMS: [usize; 4] = [8, 16, 32, 64];

#[derive(Clone, Copy, Debug)]
pub struct AttentionDims {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// Dropout on the attention probabilities: p in [0, 1), stream_key = rng::stream_key(seed, stream).
#[derive(Clone, Copy, Debug)]
pub struct AttentionDropout {
    pub p: f32,
    pub stream_key: u64,
}

/// A sliding window: query i reads key j only when |i − j| ≤ half_width.
#[derive(Clone, Copy, Debug)]
pub struct AttentionWindow<'a> {
    pub half_width: usize,
    /// (B, T) U8 from [`uniform_rows`]: 1 marks a query whose window holds no real key.
    pub uniform_rows: &'a DeviceBuffer,
}

/// key_mask (B·T, 1 = real), the window's half-width w -> (B·T) u8, 1 where
/// query i of its batch row has no real key j with |i − j| ≤ w: that query
/// is uniform over all T keys (transformers' finfo.min on every score).
pub fn uniform_rows(key_mask: &[u8], seq_len: usize, half_width: usize) -> Vec<u8> {
    let mut flags = Vec::with_capacity(key_mask.len());
    for row in key_mask.chunks(seq_len.max(1)) {
        // real[j] = real keys among the first j.
        let mut real = vec![0usize; row.len() + 1];
        for (j, &m) in row.iter().enumerate() {
            real[j + 1] = real[j] + usize::from(m != 0);
        }
        for i in 0..row.len() {
            let (lo, hi) = (i.saturating_sub(half_width), (i + half_width + 1).min(row.len()));
            flags.push(u8::from(real[hi] == real[lo]));
        }
    }
    flags
}

/// A window's half-width with its uniform-row flags on the device, made
/// from the host key mask; [`WindowFlags::window`] is what the launchers take.
pub struct WindowFlags {
    pub half_width: usize,
    pub uniform_rows: DeviceBuffer,
}

impl WindowFlags {
    /// key_mask (B·T) over rows of `seq_len` -> the flags of a window of
    /// `half_width`, uploaded to `device`.
    pub fn new(device: &Device, key_mask: &[u8], seq_len: usize, half_width: usize) -> Result<WindowFlags> {
        Ok(WindowFlags { half_width, uniform_rows: DeviceBuffer::from_u8(device, &uniform_rows(key_mask, seq_len, half_width))? })
    }

    pub fn window(&self) -> AttentionWindow<'_> {
        AttentionWindow { half_width: self.half_width, uniform_rows: &self.uniform_rows }
    }
}

/// The kernels' trailing (window, uniform_rows) arguments: −1 and any buffer
/// (not read) without a window.
fn window_args<'a>(
    op: &'static str,
    window: Option<AttentionWindow<'a>>,
    key_mask: &'a DeviceBuffer,
    dims: AttentionDims,
) -> Result<(i32, &'a DeviceBuffer)> {
    match window {
        None => Ok((-1, key_mask)),
        Some(w) => {
            expect(op, "uniform_rows", w.uniform_rows, dims.batch * dims.seq_len, Elem::U8)?;
            let half = i32::try_from(w.half_width.min(dims.seq_len)).expect("seq_len fits in i32");
            Ok((half, w.uniform_rows))
        }
    }
}

/// Which kernels a launch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    /// kernels/attention_tc.cu: WMMA tensor cores (BF16 at head_dim 32 and 64).
    TensorCore,
    /// kernels/attention.cu: f32 FMAs (F32, and BF16 at head_dim 8 and 16).
    Scalar,
}

/// The kernels a (head_dim, dtype) runs on.
pub fn path(head_dim: usize, elem: Elem) -> AttentionPath {
    if elem == Elem::BF16 && matches!(head_dim, 32 | 64) { AttentionPath::TensorCore } else { AttentionPath::Scalar }
}

/// The entry point of one pass (`fwd`, `bwd_dq` or `bwd_dkdv`) at a (head_dim,
/// dtype): `attention[_tc]_d<D>_<pass>_<dtype>`.
pub fn kernel_name(head_dim: usize, elem: Elem, pass: &str) -> String {
    let stem = match path(head_dim, elem) {
        AttentionPath::TensorCore => "attention_tc",
        AttentionPath::Scalar => "attention",
    };
    format!("{stem}_d{head_dim}_{pass}_{}", elem.suffix())
}

/// Threads per block of the tensor-core kernels (4 warps of 16 rows).
const TC_THREADS: u32 = 128;

/// Lanes per row for a head dim (the kernels' SPLIT template argument).
pub fn split(head_dim: usize) -> u32 {
    if head_dim == 64 { 2 } else { 1 }
}

/// The kernel arguments the dropout turns into: (stream_key, threshold, keep_scale).
/// Element kept when rng_bits24 >= threshold; threshold 0 with keep_scale 1 is no dropout.
pub(super) fn dropout_args(op: &'static str, dropout: Option<AttentionDropout>) -> Result<(u64, u32, f32)> {
    match dropout {
        None => Ok((0, 0, 1.0)),
        Some(d) => {
            if !(0.0..1.0).contains(&d.p) {
                return Err(Error::shape(op, format!("dropout probability {} must be in [0, 1)", d.p)));
            }
            let p = d.p as f64;
            Ok((d.stream_key, (p * (1u32 << 24) as f64).round() as u32, (1.0 / (1.0 - p)) as f32))
        }
    }
}

/// Checks dims and the common inputs, and returns the launch shape.
fn check(
    op: &'static str,
    dims: AttentionDims,
    inputs: &[(&str, &DeviceBuffer)],
    key_mask: &DeviceBuffer,
    lse: &DeviceBuffer,
) -> Result<LaunchShape> {
    let AttentionDims { batch, seq_len, heads, head_dim } = dims;
    if batch == 0 || seq_len == 0 || heads == 0 {
        return Err(Error::shape(op, format!("{dims:?}: batch, seq_len and heads must be at least 1")));
    }
    if !HEAD_DIMS.contains(&head_dim) {
        return Err(Error::shape(op, format!("{dims:?}: head_dim must be one of {HEAD_DIMS:?}")));
    }
    let n = batch * seq_len * heads * head_dim;
    let elem = inputs[0].1.elem();
    for (what, b) in inputs {
        expect_float(op, what, b, n)?;
        if b.elem() != elem {
            return Err(Error::shape(op, format!("{what} {b:?} differs in dtype from {:?}", elem)));
        }
    }
    expect(op, "key_mask", key_mask, batch * seq_len, Elem::U8)?;
    expect(op, "lse", lse, batch * heads * seq_len, Elem::F32)?;
    let blocks = batch * heads * seq_len.div_ceil(ROWS);
    let blocks = u32::try_from(blocks).map_err(|_| Error::shape(op, format!("{dims:?} needs too many blocks")))?;
    Ok(match path(head_dim, elem) {
        AttentionPath::TensorCore => LaunchShape::linear(blocks, TC_THREADS),
        AttentionPath::Scalar => LaunchShape::linear(blocks, ROWS as u32 * split(head_dim)),
    })
}

// q, k, v (B, T, H·D) T; key_mask (B, T) U8; an optional window with its
// (B, T) U8 uniform rows -> out (B, T, H·D) T, lse (B, H, T) F32
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd(
    q: &DeviceBuffer,
    k: &DeviceBuffer,
    v: &DeviceBuffer,
    key_mask: &DeviceBuffer,
    out: &DeviceBuffer,
    lse: &DeviceBuffer,
    dims: AttentionDims,
    scale: f32,
    dropout: Option<AttentionDropout>,
    window: Option<AttentionWindow<'_>>,
) -> Result<()> {
    let op = "attention_fwd";
    let shape = check(op, dims, &[("q", q), ("k", k), ("v", v), ("out", out)], key_mask, lse)?;
    let (key, threshold, keep_scale) = dropout_args(op, dropout)?;
    let (half_width, uniform) = window_args(op, window, key_mask, dims)?;
    KernelArgs::new()
        .buf(q)
        .buf(k)
        .buf(v)
        .buf(key_mask)
        .buf(out)
        .buf(lse)
        .len(dims.batch)?
        .len(dims.seq_len)?
        .len(dims.heads)?
        .f32(scale)
        .u64(key)
        .u32(threshold)
        .f32(keep_scale)
        .i32(half_width)
        .buf(uniform)
        .launch(q.device(), &kernel_name(dims.head_dim, q.elem(), "fwd"), shape)
}

// q, k, v, out (B, T, H·D) T; key_mask (B, T) U8; lse (B, H, T) F32 from the
// forward; dout (B, T, H·D) T -> dq, dk, dv (B, T, H·D) T, written.
// Two launches: dq (which also writes delta = rowsum(dout ∘ out), a (B, H, T)
// F32 scratch), then dk/dv, which reads delta.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    q: &DeviceBuffer,
    k: &DeviceBuffer,
    v: &DeviceBuffer,
    key_mask: &DeviceBuffer,
    out: &DeviceBuffer,
    lse: &DeviceBuffer,
    dout: &DeviceBuffer,
    dq: &DeviceBuffer,
    dk: &DeviceBuffer,
    dv: &DeviceBuffer,
    dims: AttentionDims,
    scale: f32,
    dropout: Option<AttentionDropout>,
    window: Option<AttentionWindow<'_>>,
) -> Result<()> {
    let op = "attention_bwd";
    let inputs = [("q", q), ("k", k), ("v", v), ("out", out), ("dout", dout), ("dq", dq), ("dk", dk), ("dv", dv)];
    let shape = check(op, dims, &inputs, key_mask, lse)?;
    let (key, threshold, keep_scale) = dropout_args(op, dropout)?;
    let (half_width, uniform) = window_args(op, window, key_mask, dims)?;
    let delta = DeviceBuffer::uninit(q.device(), dims.batch * dims.heads * dims.seq_len, Elem::F32)?;
    KernelArgs::new()
        .buf(q)
        .buf(k)
        .buf(v)
        .buf(key_mask)
        .buf(out)
        .buf(lse)
        .buf(dout)
        .buf(dq)
        .buf(&delta)
        .len(dims.batch)?
        .len(dims.seq_len)?
        .len(dims.heads)?
        .f32(scale)
        .u64(key)
        .u32(threshold)
        .f32(keep_scale)
        .i32(half_width)
        .buf(uniform)
        .launch(q.device(), &kernel_name(dims.head_dim, q.elem(), "bwd_dq"), shape)?;
    KernelArgs::new()
        .buf(q)
        .buf(k)
        .buf(v)
        .buf(key_mask)
        .buf(lse)
        .buf(&delta)
        .buf(dout)
        .buf(dk)
        .buf(dv)
        .len(dims.batch)?
        .len(dims.seq_len)?
        .len(dims.heads)?
        .f32(scale)
        .u64(key)
        .u32(threshold)
        .f32(keep_scale)
        .i32(half_width)
        .buf(uniform)
        .launch(q.device(), &kernel_name(dims.head_dim, q.elem(), "bwd_dkdv"), shape)
}
