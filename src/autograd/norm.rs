//! Layer norm over the last dimension, with eps from config.json.

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, NormStats};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Saves the row statistics (mean, 1/σ) from the forward pass.
struct LayerNorm {
    stats: NormStats,
}

impl Backward for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, w) = (ctx.inputs[0], ctx.inputs[1]);
        let [dx, dw, db] = backend::of(x).layer_norm_bwd(x, w, &self.stats, dout)?;
        Ok(vec![Some(dx), Some(dw), Some(db)])
    }
}

/// x (…, C), weight (C), bias (C) -> (…, C).
pub fn layer_norm(tape: &mut Tape, x: Var, weight: Var, bias: Var, eps: f64) -> Result<Var> {
    let (tx, tw, tb) = (tape.value(x), tape.value(weight), tape.value(bias));
    let (_, cols) = tx.rows_cols();
    if tx.dims() == 0 || tw.shape() != [cols] || tb.shape() != [cols] || tw.dtype() != tx.dtype() || tb.dtype() != tx.dtype() {
        return Err(Error::shape("layer_norm", format!("x {:?}, weight {:?}, bias {:?}", tx.shape(), tw.shape(), tb.shape())));
    }
    let (out, stats) = backend::of(tx).layer_norm_fwd(tx, tw, tb, eps)?;
    Ok(tape.push(out, &[x, weight, bias], LayerNorm { stats }))
}
