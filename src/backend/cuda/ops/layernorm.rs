//! LayerNorm launchers (kernels/layernorm.cu): forward with an optional fused
//! residual add, and a deterministic backward.
//!
//! Launch branches of the forward and of the backward's dx, by cols (the
//! kernels' `<branch>` name part):
//! - `c128` (cols ≤ 128), `c512` (≤ 512), `c1024` (≤ 1024): one warp per row,
//!   the row in registers (4, 16 or 32 values per lane), [`FWD_WARPS`] rows
//!   per block;
//! - `wide` (cols > 1024): one block of [`WIDE_THREADS`] per row, rereading
//!   the row from memory.
//!
//! dweight and dbias, for every cols: `layer_norm_bwd_dparams_*` sums chunks
//! of rows per column into a scratch buffer, and
//! `layer_norm_bwd_dparams_sum_f32` adds the chunks up in order. No float
//! atomics, so the gradients are bit-reproducible; they are formed and
//! summed in f64 (kernels/layernorm.cu says why).

use super::{expect, expect_float};
use crate::device::{DeviceBuffer, Elem, KernelArgs, LaunchShape};
use crate::error::{Error, Result};

/// Rows per block of the warp-per-row forward.
pub const FWD_WARPS: u32 = 4;
/// Threads per block of the `wide` kernels and of the dparams kernels (8 warps).
pub const WIDE_THREADS: u32 = 256;
/// At most this many chunks of rows in the dweight/dbias partial sums.
pub const DPARAMS_MAX_CHUNKS: usize = 64;
/// Rows per dweight/dbias chunk, at least (8 warps, several rows each).
const DPARAMS_MIN_CHUNK: usize = 32;

/// The launch branch for rows of `cols` elements: the kernel-name part and
/// whether one warp handles a row.
pub(crate) fn branch(cols: usize) -> (&'static str, bool) {
    match cols {
        0..=128 => ("c128", true),
        129..=512 => ("c512", true),
        513..=1024 => ("c1024", true),
        _ => ("wide", false),
    }
}

/// Launch shape of a row-wise LayerNorm forward (plain or embedding) over `rows` rows.
pub(crate) fn fwd_shape(op: &'static str, rows: usize, cols: usize) -> Result<LaunchShape> {
    let (_, warp_rows) = branch(cols);
    let blocks = if warp_rows { rows.div_ceil(FWD_WARPS as usize) } else { rows };
    let blocks = u32::try_from(blocks).map_err(|_| Error::shape(op, format!("{rows} rows need too many blocks")))?;
    Ok(LaunchShape::linear(blocks, if warp_rows { FWD_WARPS * 32 } else { WIDE_THREADS }))
}

fn same_elem(op: &'static str, x: &DeviceBuffer, others: &[(&str, &DeviceBuffer)]) -> Result<()> {
    for (what, b) in others {
        if b.elem() != x.elem() {
            return Err(Error::shape(op, format!("{what} {b:?} differs in dtype from {:?}", x.elem())));
        }
    }
    Ok(())
}

// x, residual (rows, cols); weight, bias (cols) -> y (rows, cols), sum (rows, cols)
// when given, mean, rstd (rows) F32.
// s = x (+ residual), rounded to T; y = (s − mean)·rstd·weight + bias over the last dim.
// Each element is read before it is written, so y and sum may alias x or residual.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd(
    x: &DeviceBuffer,
    residual: Option<&DeviceBuffer>,
    weight: &DeviceBuffer,
    bias: &DeviceBuffer,
    y: &DeviceBuffer,
    sum: Option<&DeviceBuffer>,
    mean: &DeviceBuffer,
    rstd: &DeviceBuffer,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    let op = "layer_norm_fwd";
    if cols == 0 {
        return Err(Error::shape(op, format!("cols must be at least 1 (rows {rows})")));
    }
    let n = rows * cols;
    expect_float(op, "x", x, n)?;
    expect_float(op, "weight", weight, cols)?;
    expect_float(op, "bias", bias, cols)?;
    expect_float(op, "y", y, n)?;
    same_elem(op, x, &[("weight", weight), ("bias", bias), ("y", y)])?;
    if let Some(r) = residual {
        expect_float(op, "residual", r, n)?;
        same_elem(op, x, &[("residual", r)])?;
    }
    if let Some(s) = sum {
        expect_float(op, "sum", s, n)?;
        same_elem(op, x, &[("sum", s)])?;
    }
    expect(op, "mean", mean, rows, Elem::F32)?;
    expect(op, "rstd", rstd, rows, Elem::F32)?;
    if rows == 0 {
        return Ok(());
    }
    let kernel = format!("layer_norm_{}_fwd_{}", branch(cols).0, x.elem().suffix());
    KernelArgs::new()
        .buf(x)
        .ptr(residual.map_or(0, |r| r.ptr()))
        .buf(weight)
        .buf(bias)
        .buf(y)
        .ptr(sum.map_or(0, |s| s.ptr()))
        .buf(mean)
        .buf(rstd)
        .len(rows)?
        .len(cols)?
        .f32(eps)
        .launch(x.device(), &kernel, fwd_shape(op, rows, cols)?)
}

// s (rows, cols) the LN input; weight (cols); mean, rstd (rows) F32; dy (rows, cols)
// -> dx (rows, cols) written; dweight, dbias (cols) F32 written (not accumulated).
// dx may alias dy or s (each element is read before it is written).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    s: &DeviceBuffer,
    weight: &DeviceBuffer,
    mean: &DeviceBuffer,
    rstd: &DeviceBuffer,
    dy: &DeviceBuffer,
    dx: &DeviceBuffer,
    dweight: &DeviceBuffer,
    dbias: &DeviceBuffer,
    rows: usize,
    cols: usize,
) -> Result<()> {
    layer_norm_bwd_chunks(s, weight, mean, rstd, dy, dx, dweight, dbias, rows, cols, DPARAMS_MAX_CHUNKS, DPARAMS_MIN_CHUNK)
}

/// [`layer_norm_bwd`] with the dweight/dbias rows cut into at most
/// `max_chunks` chunks of at least `min_chunk` rows: the check table shrinks
/// them so that small shapes span several chunks with several rows per warp,
/// as large ones do.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd_chunks(
    s: &DeviceBuffer,
    weight: &DeviceBuffer,
    mean: &DeviceBuffer,
    rstd: &DeviceBuffer,
    dy: &DeviceBuffer,
    dx: &DeviceBuffer,
    dweight: &DeviceBuffer,
    dbias: &DeviceBuffer,
    rows: usize,
    cols: usize,
    max_chunks: usize,
    min_chunk: usize,
) -> Result<()> {
    let op = "layer_norm_bwd";
    if cols == 0 {
        return Err(Error::shape(op, format!("cols must be at least 1 (rows {rows})")));
    }
    let n = rows * cols;
    expect_float(op, "s", s, n)?;
    expect_float(op, "weight", weight, cols)?;
    expect_float(op, "dy", dy, n)?;
    expect_float(op, "dx", dx, n)?;
    same_elem(op, s, &[("weight", weight), ("dy", dy), ("dx", dx)])?;
    expect(op, "mean", mean, rows, Elem::F32)?;
    expect(op, "rstd", rstd, rows, Elem::F32)?;
    expect(op, "dweight", dweight, cols, Elem::F32)?;
    expect(op, "dbias", dbias, cols, Elem::F32)?;
    let device = s.device();
    if rows == 0 {
        // No rows: the parameter gradients are zero.
        // SAFETY: both buffers own cols F32 elements.
        return unsafe {
            device.fill_bytes(dweight.ptr(), 0, dweight.bytes())?;
            device.fill_bytes(dbias.ptr(), 0, dbias.bytes())
        };
    }
    let sfx = s.elem().suffix();
    // Chunks of whole rows: every chunk gets at least one row.
    let chunk = rows.div_ceil(max_chunks.max(1)).max(min_chunk.max(1));
    let chunks = rows.div_ceil(chunk);
    let column_blocks = u32::try_from(cols.div_ceil(32)).map_err(|_| Error::shape(op, format!("{cols} cols")))?;
    // (chunks, 2, cols) f64, allocated as twice as many F32 elements.
    let partial = DeviceBuffer::uninit(device, chunks * 2 * cols * 2, Elem::F32)?;
    let shape = LaunchShape { grid: (column_blocks, chunks as u32, 1), block: (WIDE_THREADS, 1, 1), shared_bytes: 0 };
    KernelArgs::new().buf(s).buf(mean).buf(rstd).buf(dy).buf(&partial).len(rows)?.len(cols)?.len(chunk)?.launch(
        device,
        &format!("layer_norm_bwd_dparams_{sfx}"),
        shape,
    )?;
    // dx last: it may overwrite dy or s, which the partial sums read.
    KernelArgs::new().buf(s).buf(weight).buf(mean).buf(rstd).buf(dy).buf(dx).len(rows)?.len(cols)?.launch(
        device,
        &format!("layer_norm_{}_bwd_{sfx}", branch(cols).0),
        fwd_shape(op, rows, cols)?,
    )?;
    let reduce = LaunchShape { grid: (column_blocks, 2, 1), block: (WIDE_THREADS, 1, 1), shared_bytes: 0 };
    KernelArgs::new().buf(&partial).buf(dweight).buf(dbias).len(chunks)?.len(cols)?.launch(device, "layer_norm_bwd_dparams_sum_f32", reduce)
}
