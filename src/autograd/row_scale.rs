//! Per-row loss scales (`--augment-weight`): the identity on the logits
//! whose backward multiplies each row's gradient by its scale.
//!
//! A loss is a sum of per-row terms over one normaliser (the batch, or the
//! class weights' sum), so scaling a row's gradient is scaling its term: the
//! gradient is that of the loss with each row's term times its scale, the
//! normaliser unchanged. The forward value, and so the logged loss, is the
//! unscaled one. Like `aggregate_windows` it computes on the host: (B, C)
//! or (B, T, C) logits are a small copy beside the encoder.

use std::sync::Arc;

use super::{Backward, BackwardContext, Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

struct ScaleRowGradients {
    scales: Arc<[f64]>,
}

impl Backward for ScaleRowGradients {
    fn name(&self) -> &'static str {
        "scale_row_gradients"
    }

    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let mut dx = dout.to_host()?.to_f64_vec();
        let per_row = dx.len() / self.scales.len().max(1);
        for (row, &s) in dx.chunks_mut(per_row.max(1)).zip(self.scales.iter()) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        Ok(vec![Some(Tensor::from_f64_like(dx, dout.shape(), dout)?)])
    }
}

/// logits (B, ...) -> the same values; row b's gradient is scaled by `scales[b]`.
pub fn scale_row_gradients(tape: &mut Tape, logits: Var, scales: Arc<[f64]>) -> Result<Var> {
    let t = tape.value(logits);
    if t.dims() == 0 || t.shape()[0] != scales.len() {
        return Err(Error::shape("scale_row_gradients", format!("logits {:?} for {} row scales", t.shape(), scales.len())));
    }
    let output = t.clone();
    Ok(tape.push(output, &[logits], ScaleRowGradients { scales }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::loss::cross_entropy;

    /// Cross-entropy through the op equals the hand-weighted loss's gradient:
    /// Σ s_i · (−log p_i[y_i]) / B, each row's softmax gradient times s_i.
    #[test]
    fn a_rows_gradient_is_its_loss_term_scaled() {
        let x: Vec<f64> = vec![0.3, -1.2, 2.0, 0.7, -0.4, 1.1];
        let y = [2i64, 0];
        let scales: Arc<[f64]> = Arc::from(vec![0.25, 1.0]);
        let mut tape = Tape::new();
        let logits = tape.leaf(Tensor::from_vec(x.clone(), &[2, 3]).unwrap(), true);
        let scaled = scale_row_gradients(&mut tape, logits, scales.clone()).unwrap();
        let loss = cross_entropy(&mut tape, scaled, &y, None).unwrap();
        let plain = -(0..2)
            .map(|i| {
                let row = &x[i * 3..i * 3 + 3];
                let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
                row[y[i] as usize] - lse
            })
            .sum::<f64>()
            / 2.0;
        assert!((tape.value(loss).to_f64_vec()[0] - plain).abs() < 1e-12, "the forward is the unscaled loss");
        let grads = tape.backward(loss).unwrap();
        let got = grads.get(logits).unwrap().to_f64_vec();
        for i in 0..2 {
            let row = &x[i * 3..i * 3 + 3];
            let z: f64 = row.iter().map(|v| v.exp()).sum();
            for c in 0..3 {
                let want = scales[i] * (row[c].exp() / z - if c == y[i] as usize { 1.0 } else { 0.0 }) / 2.0;
                assert!((got[i * 3 + c] - want).abs() < 1e-12, "row {i} class {c}: {} vs {want}", got[i * 3 + c]);
            }
        }
        assert!(scale_row_gradients(&mut tape, logits, Arc::from(vec![1.0])).is_err());
    }
}
