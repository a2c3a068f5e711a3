//! DeBERTa's disentangled attention (kernels/relative_attention.cu): the
//! composed first device path, materialising the (B, H, T, T) scores in
//! f32 scratch. Forward: scores, softmax, context; backward: score
//! gradients, then dq, dk, dv and the two position tables' gradients.

use super::attention::{AttentionDropout, dropout_args};
use super::{expect, expect_float};
use crate::device::{DeviceBuffer, Elem, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 128;

/// Batch, sequence, heads, head size and the tables' rows of one call.
#[derive(Clone, Copy, Debug)]
pub struct RelativeDims {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub positions: usize,
}

impl RelativeDims {
    fn activations(&self) -> usize {
        self.batch * self.seq_len * self.heads * self.head_dim
    }
    fn scores(&self) -> usize {
        self.batch * self.heads * self.seq_len * self.seq_len
    }
    fn table(&self) -> usize {
        self.positions * self.heads * self.head_dim
    }
    /// The five sizes every kernel takes, after its buffers.
    fn push(&self, args: KernelArgs) -> Result<KernelArgs> {
        args.len(self.batch)?.len(self.seq_len)?.len(self.heads)?.len(self.head_dim)?.len(self.positions)
    }
}

fn shape(n: usize) -> LaunchShape {
    LaunchShape::linear(elementwise_blocks(n, THREADS), THREADS)
}

/// Checks the inputs every launch shares.
fn check(op: &'static str, dims: RelativeDims, activations: &[(&str, &DeviceBuffer)], rows: &DeviceBuffer) -> Result<Elem> {
    let elem = activations[0].1.elem();
    for (what, b) in activations {
        expect_float(op, what, b, dims.activations())?;
        if b.elem() != elem {
            return Err(Error::shape(op, format!("{what}: {b:?} is not {elem:?} like the others")));
        }
    }
    expect(op, "rows", rows, (2 * dims.seq_len).saturating_sub(1), Elem::U32)?;
    Ok(elem)
}

/// q, k, v (B, T, H·D), pq, pk (R, H·D), rows (2T − 1) u32, key mask (B·T)
/// u8 -> context `out` (B, T, H·D) and the probabilities `probs` (B, H, T, T) f32.
#[allow(clippy::too_many_arguments)]
pub fn relative_attention_fwd(
    (q, k, v): (&DeviceBuffer, &DeviceBuffer, &DeviceBuffer),
    (pq, pk): (&DeviceBuffer, &DeviceBuffer),
    rows: &DeviceBuffer,
    key_mask: &DeviceBuffer,
    out: &DeviceBuffer,
    probs: &DeviceBuffer,
    dims: RelativeDims,
    scale: f32,
    dropout: Option<AttentionDropout>,
) -> Result<()> {
    let op = "relative_attention";
    let elem = check(op, dims, &[("q", q), ("k", k), ("v", v), ("out", out)], rows)?;
    for (what, t) in [("pq", pq), ("pk", pk)] {
        expect(op, what, t, dims.table(), elem)?;
    }
    expect(op, "key mask", key_mask, dims.batch * dims.seq_len, Elem::U8)?;
    expect(op, "probs", probs, dims.scores(), Elem::F32)?;
    let (key, threshold, keep_scale) = dropout_args(op, dropout)?;
    let device = q.device();
    let suffix = elem.suffix();
    let args = KernelArgs::new().buf(q).buf(k).buf(pq).buf(pk).buf(rows).buf(probs);
    dims.push(args)?.f32(scale).launch(device, &format!("rel_scores_{suffix}"), shape(dims.scores()))?;
    let rows_total = dims.batch * dims.heads * dims.seq_len;
    KernelArgs::new().buf(probs).buf(key_mask).len(dims.batch)?.len(dims.heads)?.len(dims.seq_len)?.launch(
        device,
        "rel_softmax_f32",
        shape(rows_total),
    )?;
    let args = KernelArgs::new().buf(probs).buf(v).buf(out);
    dims.push(args)?.u64(key).u32(threshold).f32(keep_scale).launch(device, &format!("rel_context_{suffix}"), shape(dims.activations()))
}

/// The gradients of [`relative_attention_fwd`]: dout (B, T, H·D) ->
/// dq, dk, dv (B, T, H·D) and dpq, dpk (R, H·D), with `dscores` (B, H, T, T) f32 scratch.
#[allow(clippy::too_many_arguments)]
pub fn relative_attention_bwd(
    (q, k, v): (&DeviceBuffer, &DeviceBuffer, &DeviceBuffer),
    (pq, pk): (&DeviceBuffer, &DeviceBuffer),
    rows: &DeviceBuffer,
    key_mask: &DeviceBuffer,
    probs: &DeviceBuffer,
    dout: &DeviceBuffer,
    dscores: &DeviceBuffer,
    (dq, dk, dv): (&DeviceBuffer, &DeviceBuffer, &DeviceBuffer),
    (dpq, dpk): (&DeviceBuffer, &DeviceBuffer),
    dims: RelativeDims,
    scale: f32,
    dropout: Option<AttentionDropout>,
) -> Result<()> {
    let op = "relative_attention backward";
    let activations = [("q", q), ("k", k), ("v", v), ("dout", dout), ("dq", dq), ("dk", dk), ("dv", dv)];
    let elem = check(op, dims, &activations, rows)?;
    for (what, t) in [("pq", pq), ("pk", pk), ("dpq", dpq), ("dpk", dpk)] {
        expect(op, what, t, dims.table(), elem)?;
    }
    expect(op, "key mask", key_mask, dims.batch * dims.seq_len, Elem::U8)?;
    expect(op, "probs", probs, dims.scores(), Elem::F32)?;
    expect(op, "dscores", dscores, dims.scores(), Elem::F32)?;
    let (key, threshold, keep_scale) = dropout_args(op, dropout)?;
    let device = q.device();
    let suffix = elem.suffix();
    let rows_total = dims.batch * dims.heads * dims.seq_len;
    let args = KernelArgs::new().buf(probs).buf(v).buf(dout).buf(key_mask).buf(dscores);
    let args = dims.push(args)?.f32(scale).u64(key).u32(threshold).f32(keep_scale);
    args.launch(device, &format!("rel_dscores_{suffix}"), shape(rows_total))?;
    for (x, table, dx, by_query) in [(k, pk, dq, 1), (q, pq, dk, 0)] {
        let args = KernelArgs::new().buf(dscores).buf(x).buf(table).buf(rows).buf(dx);
        dims.push(args)?.i32(by_query).launch(device, &format!("rel_dqk_{suffix}"), shape(dims.activations()))?;
    }
    let args = KernelArgs::new().buf(probs).buf(dout).buf(dv);
    dims.push(args)?.u64(key).u32(threshold).f32(keep_scale).launch(device, &format!("rel_dv_{suffix}"), shape(dims.activations()))?;
    let args = KernelArgs::new().buf(dscores).buf(q).buf(k).buf(rows).buf(dpq).buf(dpk);
    dims.push(args)?.launch(device, &format!("rel_dtables_{suffix}"), shape(dims.table()))
}
