//! Launchers for kernels/elementwise.cu: add, add-assign, scale, cast, fill,
//! deterministic column sums, the first ([CLS]) token, the pooler's tanh and
//! DistilBERT's ReLU.
//!
//! Elementwise launchers accept an output that is one of the inputs (in
//! place): every element is read and written by the same thread.

use super::{expect, expect_float};
use crate::device::{DeviceBuffer, Elem, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 256;

fn linear(n: usize) -> LaunchShape {
    LaunchShape::linear(elementwise_blocks(n, THREADS), THREADS)
}

fn same_dtype(op: &'static str, bufs: &[(&str, &DeviceBuffer)]) -> Result<()> {
    let first = bufs[0].1.elem();
    if bufs.iter().any(|(_, b)| b.elem() != first) {
        let list: Vec<String> = bufs.iter().map(|(name, b)| format!("{name} {b:?}")).collect();
        return Err(Error::shape(op, format!("{} differ in dtype", list.join(", "))));
    }
    Ok(())
}

// a (n), b (n) -> out (n) = a + b, one dtype; out may be a or b
pub fn add(a: &DeviceBuffer, b: &DeviceBuffer, out: &DeviceBuffer) -> Result<()> {
    let n = a.len();
    expect_float("add", "a", a, n)?;
    expect_float("add", "b", b, n)?;
    expect_float("add", "out", out, n)?;
    same_dtype("add", &[("a", a), ("b", b), ("out", out)])?;
    let kernel = format!("add_{}", a.elem().suffix());
    KernelArgs::new().buf(a).buf(b).buf(out).len(n)?.launch(a.device(), &kernel, linear(n))
}

// acc (n) += g (n): F32 += F32, F32 += BF16 or BF16 += BF16
pub fn add_assign(acc: &DeviceBuffer, g: &DeviceBuffer) -> Result<()> {
    let n = acc.len();
    expect_float("add_assign", "acc", acc, n)?;
    expect_float("add_assign", "g", g, n)?;
    let Some(kernel) = add_assign_kernel(acc.elem(), g.elem()) else {
        return Err(Error::shape("add_assign", format!("cannot add {g:?} into {acc:?} (a bf16 accumulator takes only bf16)")));
    };
    KernelArgs::new().buf(acc).buf(g).len(n)?.launch(acc.device(), kernel, linear(n))
}

/// The kernel that adds a `g` gradient into an `acc` accumulator; None for
/// BF16 += F32, which would silently drop the gradient's precision.
pub fn add_assign_kernel(acc: Elem, g: Elem) -> Option<&'static str> {
    match (acc, g) {
        (Elem::F32, Elem::F32) => Some("add_assign_f32"),
        (Elem::F32, Elem::BF16) => Some("add_assign_widen_bf16"),
        (Elem::BF16, Elem::BF16) => Some("add_assign_bf16"),
        _ => None,
    }
}

// x (n) -> out (n) = s · x, one dtype; out may be x
pub fn scale(x: &DeviceBuffer, out: &DeviceBuffer, s: f32) -> Result<()> {
    let n = x.len();
    expect_float("scale", "x", x, n)?;
    expect_float("scale", "out", out, n)?;
    same_dtype("scale", &[("x", x), ("out", out)])?;
    let kernel = format!("scale_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(out).len(n)?.f32(s).launch(x.device(), &kernel, linear(n))
}

/// The kernel that converts `src` to `dst` (`narrow_f32`: F32 -> BF16,
/// `widen_bf16`: BF16 -> F32); None for a same-type copy, which needs none.
pub fn cast_kernel(src: Elem, dst: Elem) -> Option<&'static str> {
    match (src, dst) {
        (Elem::F32, Elem::BF16) => Some("narrow_f32"),
        (Elem::BF16, Elem::F32) => Some("widen_bf16"),
        _ => None,
    }
}

// src (n) -> dst (n): F32 -> BF16 (round to nearest even), BF16 -> F32, or a same-type copy
pub fn cast(src: &DeviceBuffer, dst: &DeviceBuffer) -> Result<()> {
    let n = src.len();
    expect_float("cast", "src", src, n)?;
    expect_float("cast", "dst", dst, n)?;
    let kernel = match cast_kernel(src.elem(), dst.elem()) {
        Some(kernel) => kernel,
        // Same type: a stream-ordered device copy (nothing to do in place).
        None if src.ptr() == dst.ptr() => return Ok(()),
        None => return dst.copy_from(src),
    };
    KernelArgs::new().buf(src).buf(dst).len(n)?.launch(src.device(), kernel, linear(n))
}

// x (n) = value (bf16: rounded to nearest even)
pub fn fill(x: &DeviceBuffer, value: f32) -> Result<()> {
    let n = x.len();
    expect_float("fill", "x", x, n)?;
    let kernel = format!("fill_{}", x.elem().suffix());
    KernelArgs::new().buf(x).len(n)?.f32(value).launch(x.device(), &kernel, linear(n))
}

/// Rows per chunk of sum_rows's first stage: enough chunks that the grid
/// has about `SUM_ROWS_BLOCKS` blocks, each chunk at least 32 rows. A pure
/// function of the shape, so the summation order is too.
const SUM_ROWS_BLOCKS: usize = 1024;
const SUM_ROWS_MIN_CHUNK: usize = 32;

fn sum_rows_chunking(rows: usize, cols: usize) -> (usize, usize) {
    let col_blocks = cols.div_ceil(32).max(1);
    let chunks = (SUM_ROWS_BLOCKS / col_blocks).clamp(1, rows.div_ceil(SUM_ROWS_MIN_CHUNK).max(1));
    let rows_per_chunk = rows.div_ceil(chunks).max(1);
    (rows_per_chunk, rows.div_ceil(rows_per_chunk).max(1))
}

// x (rows, cols) T -> out (cols) F32 = Σ_rows x, written; deterministic
// (fixed-order two-stage reduction, no atomics)
pub fn sum_rows(x: &DeviceBuffer, out: &DeviceBuffer, rows: usize, cols: usize) -> Result<()> {
    expect_float("sum_rows", "x", x, rows * cols)?;
    expect("sum_rows", "out", out, cols, Elem::F32)?;
    if rows == 0 || cols == 0 {
        return Err(Error::shape("sum_rows", format!("empty input ({rows} rows × {cols} cols)")));
    }
    let (rows_per_chunk, chunks) = sum_rows_chunking(rows, cols);
    let device = x.device();
    let partial_kernel = format!("sum_rows_partial_{}", x.elem().suffix());
    let grid = LaunchShape { grid: (cols.div_ceil(32) as u32, chunks as u32, 1), block: (256, 1, 1), shared_bytes: 0 };
    if chunks == 1 {
        // One chunk: stage 1 writes the sums straight into out.
        return KernelArgs::new().buf(x).buf(out).len(rows)?.len(cols)?.len(rows_per_chunk)?.launch(device, &partial_kernel, grid);
    }
    let partial = DeviceBuffer::uninit(device, chunks * cols, Elem::F32)?;
    KernelArgs::new().buf(x).buf(&partial).len(rows)?.len(cols)?.len(rows_per_chunk)?.launch(device, &partial_kernel, grid)?;
    KernelArgs::new().buf(&partial).buf(out).len(chunks)?.len(cols)?.launch(device, "sum_rows_final_f32", linear(cols))
}

fn first_token_check(op: &'static str, full: &DeviceBuffer, first: &DeviceBuffer, dims: (usize, usize, usize)) -> Result<()> {
    let (batch, seq_len, cols) = dims;
    if seq_len == 0 {
        return Err(Error::shape(op, format!("expected (B, T>0, C), got ({batch}, {seq_len}, {cols})")));
    }
    expect_float(op, "(B, T, C) tensor", full, batch * seq_len * cols)?;
    expect_float(op, "(B, C) tensor", first, batch * cols)?;
    same_dtype(op, &[("(B, T, C)", full), ("(B, C)", first)])
}

// x (B, T, C) -> y (B, C) = x[:, 0, :]
pub fn first_token_fwd(x: &DeviceBuffer, y: &DeviceBuffer, batch: usize, seq_len: usize, cols: usize) -> Result<()> {
    first_token_check("first_token_fwd", x, y, (batch, seq_len, cols))?;
    let kernel = format!("first_token_fwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(y).len(batch)?.len(seq_len)?.len(cols)?.launch(x.device(), &kernel, linear(batch * cols))
}

// dy (B, C) -> dx (B, T, C): dx[:, 0, :] = dy, zeros elsewhere (written)
pub fn first_token_bwd(dy: &DeviceBuffer, dx: &DeviceBuffer, batch: usize, seq_len: usize, cols: usize) -> Result<()> {
    first_token_check("first_token_bwd", dx, dy, (batch, seq_len, cols))?;
    // The kernel's flat index runs over dx, so it must fit an int too.
    let n = batch * seq_len * cols;
    i32::try_from(n).map_err(|_| Error::shape("first_token_bwd", format!("{n} elements do not fit an int")))?;
    let kernel = format!("first_token_bwd_{}", dy.elem().suffix());
    KernelArgs::new().buf(dy).buf(dx).len(batch)?.len(seq_len)?.len(cols)?.launch(dy.device(), &kernel, linear(n))
}

/// key_mask (B·T, 1 = real) -> the mean pool's (B·T) weights: 1/count at
/// each real token of a sequence, 0 at padding.
pub fn mean_pool_weights(key_mask: &[u8], seq_len: usize) -> Vec<f32> {
    let mut weights = vec![0.0f32; key_mask.len()];
    for (w, mask) in weights.chunks_mut(seq_len.max(1)).zip(key_mask.chunks(seq_len.max(1))) {
        let count = mask.iter().filter(|&&m| m != 0).count();
        for (w, &m) in w.iter_mut().zip(mask) {
            if m != 0 {
                *w = 1.0 / count as f32;
            }
        }
    }
    weights
}

fn mean_pool_check(
    op: &'static str,
    full: &DeviceBuffer,
    pooled: &DeviceBuffer,
    weights: &DeviceBuffer,
    dims: (usize, usize, usize),
) -> Result<()> {
    let (batch, seq_len, cols) = dims;
    expect_float(op, "(B, T, C) tensor", full, batch * seq_len * cols)?;
    expect_float(op, "(B, C) tensor", pooled, batch * cols)?;
    expect(op, "weights", weights, batch * seq_len, Elem::F32)?;
    same_dtype(op, &[("(B, T, C)", full), ("(B, C)", pooled)])?;
    // The kernels' flat indices run over the (B, T, C) tensor.
    let n = batch * seq_len * cols;
    i32::try_from(n).map(|_| ()).map_err(|_| Error::shape(op, format!("{n} elements do not fit an int")))
}

// x (B, T, C), weights (B, T) F32 (1/count at real tokens, 0 at padding)
// -> y (B, C) = Σ_t weights[b, t]·x[b, t, :]
pub fn mean_pool_fwd(x: &DeviceBuffer, weights: &DeviceBuffer, y: &DeviceBuffer, batch: usize, seq_len: usize, cols: usize) -> Result<()> {
    mean_pool_check("mean_pool_fwd", x, y, weights, (batch, seq_len, cols))?;
    let kernel = format!("mean_pool_fwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(weights).buf(y).len(batch)?.len(seq_len)?.len(cols)?.launch(x.device(), &kernel, linear(batch * cols))
}

// dy (B, C), weights (B, T) F32 -> dx (B, T, C) = weights[b, t]·dy[b, :] (written)
pub fn mean_pool_bwd(
    dy: &DeviceBuffer,
    weights: &DeviceBuffer,
    dx: &DeviceBuffer,
    batch: usize,
    seq_len: usize,
    cols: usize,
) -> Result<()> {
    mean_pool_check("mean_pool_bwd", dx, dy, weights, (batch, seq_len, cols))?;
    let kernel = format!("mean_pool_bwd_{}", dy.elem().suffix());
    let n = batch * seq_len * cols;
    KernelArgs::new().buf(dy).buf(weights).buf(dx).len(batch)?.len(seq_len)?.len(cols)?.launch(dy.device(), &kernel, linear(n))
}

// x (n) -> y (n) = tanh(x); y may be x
pub fn tanh_fwd(x: &DeviceBuffer, y: &DeviceBuffer) -> Result<()> {
    let n = x.len();
    expect_float("tanh_fwd", "x", x, n)?;
    expect_float("tanh_fwd", "y", y, n)?;
    same_dtype("tanh_fwd", &[("x", x), ("y", y)])?;
    let kernel = format!("tanh_fwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(y).len(n)?.launch(x.device(), &kernel, linear(n))
}

// x (n) -> y (n) = max(x, 0); y may be x
pub fn relu_fwd(x: &DeviceBuffer, y: &DeviceBuffer) -> Result<()> {
    let n = x.len();
    expect_float("relu_fwd", "x", x, n)?;
    expect_float("relu_fwd", "y", y, n)?;
    same_dtype("relu_fwd", &[("x", x), ("y", y)])?;
    let kernel = format!("relu_fwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(y).len(n)?.launch(x.device(), &kernel, linear(n))
}

// y (n), dy (n) -> dx (n) = dy where y > 0, else 0, written, from the saved output y
pub fn relu_bwd(y: &DeviceBuffer, dy: &DeviceBuffer, dx: &DeviceBuffer) -> Result<()> {
    let n = y.len();
    expect_float("relu_bwd", "dy", dy, n)?;
    expect_float("relu_bwd", "dx", dx, n)?;
    same_dtype("relu_bwd", &[("y", y), ("dy", dy), ("dx", dx)])?;
    let kernel = format!("relu_bwd_{}", y.elem().suffix());
    KernelArgs::new().buf(y).buf(dy).buf(dx).len(n)?.launch(y.device(), &kernel, linear(n))
}

// y (n), dy (n) -> dx (n) = dy · (1 − y²), written, from the saved output y
pub fn tanh_bwd(y: &DeviceBuffer, dy: &DeviceBuffer, dx: &DeviceBuffer) -> Result<()> {
    let n = y.len();
    expect_float("tanh_bwd", "dy", dy, n)?;
    expect_float("tanh_bwd", "dx", dx, n)?;
    same_dtype("tanh_bwd", &[("y", y), ("dy", dy), ("dx", dx)])?;
    let kernel = format!("tanh_bwd_{}", y.elem().suffix());
    KernelArgs::new().buf(y).buf(dy).buf(dx).len(n)?.launch(y.device(), &kernel, linear(n))
}
