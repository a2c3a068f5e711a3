//! Launchers for kernels/rows.cu: rows copied by index (gather) and back
//! (scatter), bit for bit, in F32 or BF16.

use super::{expect, expect_float};
use crate::device::{DeviceBuffer, Elem, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 256;

/// Checks the shapes both directions share: `rows` (n) U32, `packed` (n, cols),
/// `full` (R, cols) of one float type, every index below R and none twice.
fn check(op: &'static str, packed: &DeviceBuffer, rows: &[u32], full: &DeviceBuffer, cols: usize) -> Result<()> {
    let n = rows.len();
    expect_float(op, "packed", packed, n * cols)?;
    if cols == 0 || full.len() % cols != 0 || full.elem() != packed.elem() {
        return Err(Error::shape(op, format!("{full:?} is not a table of {cols}-wide {:?} rows", packed.elem())));
    }
    expect_float(op, "table", full, full.len())?;
    let total = full.len() / cols;
    let mut seen = vec![false; total];
    for &r in rows {
        let r = r as usize;
        if r >= total || std::mem::replace(&mut seen[r], true) {
            return Err(Error::shape(op, format!("row {r} is out of range for {total} rows or named twice")));
        }
    }
    Ok(())
}

// x (R, cols) T, rows (n) U32 on the device (`host_rows` the same indices)
// -> out (n, cols) T: out[i] = x[rows[i]]
pub fn gather_rows(x: &DeviceBuffer, rows: &DeviceBuffer, host_rows: &[u32], out: &DeviceBuffer, cols: usize) -> Result<()> {
    let op = "gather_rows";
    expect(op, "rows", rows, host_rows.len(), Elem::U32)?;
    check(op, out, host_rows, x, cols)?;
    let n = host_rows.len();
    let shape = LaunchShape::linear(elementwise_blocks(n * cols, THREADS), THREADS);
    let kernel = format!("gather_rows_{}", x.elem().suffix());
    KernelArgs::new().buf_touching(x, n * cols).buf(rows).buf(out).len(n)?.len(cols)?.launch(x.device(), &kernel, shape)
}

// x (n, cols) T, rows (n) U32 distinct -> out (R, cols) T with row rows[i] = x[i];
// the other rows of out are not written (zero them first for a scatter)
pub fn scatter_rows(x: &DeviceBuffer, rows: &DeviceBuffer, host_rows: &[u32], out: &DeviceBuffer, cols: usize) -> Result<()> {
    let op = "scatter_rows";
    expect(op, "rows", rows, host_rows.len(), Elem::U32)?;
    check(op, x, host_rows, out, cols)?;
    let n = host_rows.len();
    let shape = LaunchShape::linear(elementwise_blocks(n * cols, THREADS), THREADS);
    let kernel = format!("scatter_rows_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(rows).buf_touching(out, n * cols).len(n)?.len(cols)?.launch(x.device(), &kernel, shape)
}
