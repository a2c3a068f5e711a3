//! What the CPU's inference linear kernels (INT8 in `int8.rs`, packed f32
//! in `packed_linear.rs`) do to an output block after the bias, while the
//! block is still in cache. Both kernels write y (N, out) in blocks of rows
//! × one panel of columns from parallel tasks, through `SharedOut`.

use crate::error::{Error, Result};

/// What the epilogue does after the bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue<'a> {
    Plain,
    /// GELU of each output, block by block while it is in cache: the
    /// function `activation::gelu_fwd` computes, so the same bits.
    Gelu,
    /// y + residual, residual (N, out) row-major: the residual connection
    /// after a layer's output projection, added as `activation::add` adds
    /// (one f32 addition per output), so the same bits as adding after.
    Residual(&'a [f32]),
}

impl Epilogue<'_> {
    /// An error naming `op` unless a residual holds `n × out` values.
    pub(crate) fn check(&self, op: &'static str, n: usize, out: usize) -> Result<()> {
        match self {
            Epilogue::Residual(residual) if residual.len() != n * out => {
                Err(Error::shape(op, format!("a residual of {} values for ({n}, {out}) outputs", residual.len())))
            }
            _ => Ok(()),
        }
    }

    /// Applies the GELU or the residual to rows r0..r0+rows, columns
    /// c0..c0+width of y (·, out_features), which already hold product + bias.
    ///
    /// # Safety
    /// Those rows and columns lie inside y and no other thread touches them;
    /// a residual holds as many values as y (checked by [`Epilogue::check`]).
    pub(crate) unsafe fn apply(&self, y: SharedOut, out_features: usize, r0: usize, rows: usize, c0: usize, width: usize) {
        match self {
            Epilogue::Plain => {}
            Epilogue::Gelu => {
                let mut row = [0f32; 64];
                for r in r0..r0 + rows {
                    // SAFETY: the caller's contract.
                    let y = unsafe { std::slice::from_raw_parts_mut(y.0.add(r * out_features + c0), width) };
                    for chunk in y.chunks_mut(row.len()) {
                        let len = chunk.len();
                        row[..len].copy_from_slice(chunk);
                        super::activation::gelu_chunk(&row[..len], chunk);
                    }
                }
            }
            Epilogue::Residual(residual) => {
                for r in r0..r0 + rows {
                    // SAFETY: the caller's contract.
                    let y = unsafe { std::slice::from_raw_parts_mut(y.0.add(r * out_features + c0), width) };
                    let from = &residual[r * out_features + c0..r * out_features + c0 + width];
                    for (y, &v) in y.iter_mut().zip(from) {
                        *y += v;
                    }
                }
            }
        }
    }
}

/// A raw pointer to the output that parallel tasks share; each task writes a
/// block (rows × panel columns) no other task touches.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
