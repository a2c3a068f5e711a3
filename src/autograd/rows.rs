//! Taking a batch's real tokens out of its padding and putting them back.
//!
//! A padded batch (B, T, H) spends work on its padding positions in every
//! token-wise op: the linear layers, GELU, LayerNorm and the adds, which are
//! nearly all of a forward pass. With [`gather_rows`] those ops run on the
//! real tokens alone, packed as (N, H); only attention needs the (B, T, H)
//! layout, and [`scatter_rows`] rebuilds it, with zeros at the padding.
//! The two ops are each other's adjoint, so gradients flow through both.
//! CPU only: the CUDA path keeps its fused, mask-aware kernels.

use std::sync::Arc;

use rayon::prelude::*;

use super::{Backward, BackwardContext, Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::tensor::pool::{self, Poolable};
use crate::with_float;

/// Rows per rayon task: a copy this size is worth handing to another thread.
const ROWS_PER_TASK: usize = 64;

/// Rows `rows` of a (R, C) matrix, in that order.
fn gather<T: Poolable + Sync>(x: &[T], cols: usize, rows: &[usize]) -> Vec<T> {
    let mut y = pool::take::<T>(rows.len() * cols);
    y.par_chunks_mut(cols * ROWS_PER_TASK).zip(rows.par_chunks(ROWS_PER_TASK)).for_each(|(out, rows)| {
        for (o, &r) in out.chunks_mut(cols).zip(rows) {
            o.copy_from_slice(&x[r * cols..(r + 1) * cols]);
        }
    });
    y
}

/// A (total_rows, C) matrix of zeros with row `rows[i]` set to row i of `x`.
fn scatter<T: Poolable + Sync>(x: &[T], cols: usize, rows: &[usize], total_rows: usize) -> Vec<T> {
    // Which row of x each output row takes, if any.
    let mut source = vec![usize::MAX; total_rows];
    for (i, &r) in rows.iter().enumerate() {
        source[r] = i;
    }
    let mut y = pool::take::<T>(total_rows * cols);
    y.par_chunks_mut(cols * ROWS_PER_TASK).zip(source.par_chunks(ROWS_PER_TASK)).for_each(|(out, source)| {
        for (o, &i) in out.chunks_mut(cols).zip(source) {
            if i == usize::MAX {
                o.fill(T::default());
            } else {
                o.copy_from_slice(&x[i * cols..(i + 1) * cols]);
            }
        }
    });
    y
}

/// Checks that `rows` are distinct and below `total_rows` (so scatter's
/// adjoint is gather), and that `t` is a CPU float tensor.
fn check(op: &'static str, t: &Tensor, rows: &[usize], total_rows: usize) -> Result<()> {
    if t.is_on_device() {
        return Err(Error::InvalidArgument(format!("{op} runs on the CPU only")));
    }
    let mut seen = vec![false; total_rows];
    for &r in rows {
        if r >= total_rows || std::mem::replace(&mut seen[r], true) {
            return Err(Error::shape(op, format!("row {r} is out of range or repeated ({total_rows} rows)")));
        }
    }
    Ok(())
}

struct GatherRows {
    rows: Arc<[usize]>,
}

impl Backward for GatherRows {
    fn name(&self) -> &'static str {
        "gather_rows"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let input = ctx.inputs[0];
        let (total, cols) = input.rows_cols();
        let dx = with_float!(dout.dtype(), "gather_rows", |T| Tensor::from_vec(
            scatter(dout.data::<T>()?, cols, &self.rows, total),
            input.shape()
        ))?;
        Ok(vec![Some(dx)])
    }
}

/// x (…, C), seen as (R, C) -> (rows.len(), C): the rows `rows`, which must be
/// distinct (the padded batch's real positions, b·T + t).
pub fn gather_rows(tape: &mut Tape, x: Var, rows: Arc<[usize]>) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() == 0 {
        return Err(Error::shape("gather_rows", "a scalar has no rows".to_string()));
    }
    let (total, cols) = t.rows_cols();
    check("gather_rows", t, &rows, total)?;
    let out = with_float!(t.dtype(), "gather_rows", |T| Tensor::from_vec(gather(t.data::<T>()?, cols, &rows), &[rows.len(), cols]))?;
    Ok(tape.push(out, &[x], GatherRows { rows }))
}

struct ScatterRows {
    rows: Arc<[usize]>,
}

impl Backward for ScatterRows {
    fn name(&self) -> &'static str {
        "scatter_rows"
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (_, cols) = dout.rows_cols();
        let dx = with_float!(dout.dtype(), "scatter_rows", |T| Tensor::from_vec(
            gather(dout.data::<T>()?, cols, &self.rows),
            &[self.rows.len(), cols]
        ))?;
        Ok(vec![Some(dx)])
    }
}

/// x (N, C) -> `shape` (…, C), seen as (R, C): row `rows[i]` is row i of x,
/// every other row is zero. The inverse of [`gather_rows`].
pub fn scatter_rows(tape: &mut Tape, x: Var, rows: Arc<[usize]>, shape: &[usize]) -> Result<Var> {
    let t = tape.value(x);
    let cols = shape.last().copied().unwrap_or(0);
    if t.dims() != 2 || t.shape() != [rows.len(), cols] {
        return Err(Error::shape("scatter_rows", format!("x {:?} for {} rows into {shape:?}", t.shape(), rows.len())));
    }
    let total: usize = shape[..shape.len() - 1].iter().product();
    check("scatter_rows", t, &rows, total)?;
    let out = with_float!(t.dtype(), "scatter_rows", |T| Tensor::from_vec(scatter(t.data::<T>()?, cols, &rows, total), shape))?;
    Ok(tape.push(out, &[x], ScatterRows { rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_undoes_gather_and_zeroes_the_rest() {
        let mut tape = Tape::no_grad();
        let values: Vec<f64> = (0..12).map(f64::from).collect();
        let x = tape.leaf(Tensor::from_vec(values, &[2, 3, 2]).unwrap(), false);
        let rows: Arc<[usize]> = Arc::from(vec![0, 1, 3]);
        let packed = gather_rows(&mut tape, x, rows.clone()).unwrap();
        assert_eq!(tape.value(packed).shape(), [3, 2]);
        assert_eq!(tape.value(packed).to_f64_vec(), vec![0.0, 1.0, 2.0, 3.0, 6.0, 7.0]);
        let back = scatter_rows(&mut tape, packed, rows, &[2, 3, 2]).unwrap();
        assert_eq!(tape.value(back).to_f64_vec(), vec![0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 6.0, 7.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn repeated_or_outside_rows_are_refused() {
        let mut tape = Tape::no_grad();
        let x = tape.leaf(Tensor::from_vec(vec![0.0f64; 6], &[3, 2]).unwrap(), false);
        assert!(gather_rows(&mut tape, x, Arc::from(vec![0, 0])).is_err());
        assert!(gather_rows(&mut tape, x, Arc::from(vec![3])).is_err());
        assert!(scatter_rows(&mut tape, x, Arc::from(vec![0, 1]), &[4, 2]).is_err(), "3 rows given for 2");
    }
}
