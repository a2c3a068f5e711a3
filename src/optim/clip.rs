//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_`.

use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::with_float;

/// Scales every gradient by max_norm / (norm + 1e-6) when the global norm
/// exceeds `max_norm` (the backend's [`grad_clip`](crate::backend::Backend::grad_clip)).
/// Returns the norm before clipping. A non-finite norm is an error: the step
/// must not be applied.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let present: Vec<&Tensor> = grads.iter().flatten().collect();
    let Some(first) = present.first() else { return Ok(0.0) };
    let clip = backend::of(first).grad_clip(&present, max_norm)?;
    if !clip.norm.is_finite() {
        return Err(Error::Numerical(format!("the gradient norm is {}", clip.norm)));
    }
    let factor = clip.factor.to_f64_vec()[0];
    if factor != 1.0 {
        for g in grads.iter_mut().flatten() {
            with_float!(g.dtype(), "clip_grad_norm", |T| {
                for v in g.data_mut::<T>()? {
                    *v *= factor as T;
                }
                Ok::<(), Error>(())
            })?;
        }
    }
    Ok(clip.norm)
}
