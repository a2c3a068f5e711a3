//! Layer norm over the last dimension, with eps from config.json.

use super::{Backward, BackwardContext, Tape, Var, on_device};
use crate::backend::cpu::norm::{layer_norm_bwd, layer_norm_fwd};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::with_float;

/// Saves mean and rstd (N) from the forward pass.
struct LayerNorm {
    mean: Tensor,
    rstd: Tensor,
}

impl Backward for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let (x, w) = (ctx.inputs[0], ctx.inputs[1]);
        let cols = w.numel();
        with_float!(x.dtype(), "layer_norm", |T| {
            let (dx, dw, db) =
                layer_norm_bwd(x.data::<T>()?, w.data::<T>()?, self.mean.data::<T>()?, self.rstd.data::<T>()?, dout.data::<T>()?, cols);
            Ok(vec![Some(Tensor::from_vec(dx, x.shape())?), Some(Tensor::from_vec(dw, &[cols])?), Some(Tensor::from_vec(db, &[cols])?)])
        })
    }
}

/// x (…, C), weight (C), bias (C) -> (…, C).
pub fn layer_norm(tape: &mut Tape, x: Var, weight: Var, bias: Var, eps: f64) -> Result<Var> {
    let (tx, tw, tb) = (tape.value(x), tape.value(weight), tape.value(bias));
    let (_, cols) = tx.rows_cols();
    if tx.dims() == 0 || tw.shape() != [cols] || tb.shape() != [cols] || tw.dtype() != tx.dtype() || tb.dtype() != tx.dtype() {
        return Err(Error::shape("layer_norm", format!("x {:?}, weight {:?}, bias {:?}", tx.shape(), tw.shape(), tb.shape())));
    }
    if tx.is_on_device() {
        return on_device::layer_norm(tape, x, weight, bias, eps);
    }
    let (out, mean, rstd) = with_float!(tx.dtype(), "layer_norm", |T| {
        let (y, mean, rstd) = layer_norm_fwd(tx.data::<T>()?, tw.data::<T>()?, tb.data::<T>()?, cols, eps);
        let rows = mean.len();
        Ok((Tensor::from_vec(y, tx.shape())?, Tensor::from_vec(mean, &[rows])?, Tensor::from_vec(rstd, &[rows])?))
    })?;
    Ok(tape.push(out, &[x, weight, bias], LayerNorm { mean, rstd }))
}
