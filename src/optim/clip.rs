//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::with_float;

/// Scales every gradient by max_norm / (norm + 1e-6) when the global norm
/// exceeds `max_norm`. Returns the norm before clipping. A non-finite norm is
/// an error: the step must not be applied.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sum_sq = 0.0f64;
    for g in grads.iter().flatten() {
        sum_sq += with_float!(g.dtype(), "clip_grad_norm", |T| Ok::<f64, Error>(
            g.data::<T>()?
                .iter()
                .map(|&v| {
                    let v = v as f64;
                    v * v
                })
                .sum::<f64>()
        ))?;
    }
    let norm = sum_sq.sqrt();
    if !norm.is_finite() {
        return Err(Error::Numerical(format!("the gradient norm is {norm}")));
    }
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            with_float!(g.dtype(), "clip_grad_norm", |T| {
                for v in g.data_mut::<T>()? {
                    *v *= scale as T;
                }
                Ok::<(), Error>(())
            })?;
        }
    }
    Ok(norm)
}
