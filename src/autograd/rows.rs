//! Taking a batch's real tokens out of its padding and putting them back.
//!
//! A padded batch (B, T, H) spends work on its padding positions in every
//! token-wise op: the linear layers, GELU, LayerNorm and the adds, which are
//! nearly all of a forward pass. With [`gather_rows`] those ops run on the
//! real tokens alone, packed as (N, H); only attention needs the (B, T, H)
//! layout, and [`scatter_rows`] rebuilds it, with zeros at the padding.
//! The two ops are each other's adjoint, so gradients flow through both.
//! Only where the backend packs rows (the CPU): the CUDA path keeps its
//! fused, mask-aware kernels.

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Checks that `rows` are distinct and below `total_rows`, so scatter's
/// adjoint is gather.
fn check(op: &'static str, rows: &[usize], total_rows: usize) -> Result<()> {
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
        Ok(vec![Some(backend::of(dout).scatter_rows(dout, &self.rows, input.shape())?)])
    }
}

/// x (…, C), seen as (R, C) -> (rows.len(), C): the rows `rows`, which must be
/// distinct (the padded batch's real positions, b·T + t).
pub fn gather_rows(tape: &mut Tape, x: Var, rows: Arc<[usize]>) -> Result<Var> {
    let t = tape.value(x);
    if t.dims() == 0 {
        return Err(Error::shape("gather_rows", "a scalar has no rows".to_string()));
    }
    let (total, _) = t.rows_cols();
    check("gather_rows", &rows, total)?;
    let out = backend::of(t).gather_rows(t, &rows)?;
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
        Ok(vec![Some(backend::of(dout).gather_rows(dout, &self.rows)?)])
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
    check("scatter_rows", &rows, total)?;
    let out = backend::of(t).scatter_rows(t, &rows, shape)?;
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
