//! Embedding lookup: rows of a table gathered by integer ids.

use rayon::prelude::*;

use super::{Backward, BackwardContext, Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::with_float;

struct Embedding {
    ids: Vec<u32>,
}

impl Backward for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let table = ctx.inputs[0];
        let cols = table.shape()[1];
        let dtable = with_float!(table.dtype(), "embedding", |T| {
            let d = dout.data::<T>()?;
            let mut dt = crate::tensor::pool::zeros::<T>(table.numel());
            // Scatter-add row by row; repeated ids accumulate.
            for (i, &id) in self.ids.iter().enumerate() {
                let dst = &mut dt[id as usize * cols..(id as usize + 1) * cols];
                for (a, &g) in dst.iter_mut().zip(&d[i * cols..(i + 1) * cols]) {
                    *a += g;
                }
            }
            Tensor::from_vec(dt, table.shape())
        })?;
        Ok(vec![Some(dtable)])
    }
}

/// table (V, C), ids (any shape S, flattened) -> (S…, C).
/// `what` names the table in the error when an id is out of range.
pub fn embedding(tape: &mut Tape, table: Var, ids: &[u32], ids_shape: &[usize], what: &str) -> Result<Var> {
    let t = tape.value(table);
    if t.dims() != 2 || ids.len() != ids_shape.iter().product::<usize>() {
        return Err(Error::shape("embedding", format!("table {:?}, {} ids for shape {:?}", t.shape(), ids.len(), ids_shape)));
    }
    if t.is_on_device() {
        return Err(Error::Device("embedding: on a device the embeddings run as one fused op (on_device::embeddings_ln)".into()));
    }
    let (vocab, cols) = (t.shape()[0], t.shape()[1]);
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(Error::InvalidArgument(format!("{what}: id {bad} is out of range for a table of {vocab} rows")));
    }
    let mut out_shape = ids_shape.to_vec();
    out_shape.push(cols);
    let out = with_float!(t.dtype(), "embedding", |T| {
        let table = t.data::<T>()?;
        let mut y = crate::tensor::pool::take::<T>(ids.len() * cols);
        y.par_chunks_mut(cols).zip(ids.par_iter()).for_each(|(row, &id)| {
            row.copy_from_slice(&table[id as usize * cols..(id as usize + 1) * cols]);
        });
        Tensor::from_vec(y, &out_shape)
    })?;
    Ok(tape.push(out, &[table], Embedding { ids: ids.to_vec() }))
}
