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
    let clip = grad_norm_for_clip(grads, max_norm)?;
    let factor = clip.factor.to_f64_vec()[0];
    if factor != 1.0 {
        for g in grads.iter_mut().flatten() {
            with_float!(g.dtype(), "clip_grad_norm", |T| {
                crate::backend::cpu::adamw::scale_in_place(g.data_mut::<T>()?, factor as T);
                Ok::<(), Error>(())
            })?;
        }
    }
    Ok(clip.norm)
}

/// The global norm of a step's gradients and the factor that clips them,
/// not yet applied: AdamW can fold it into its update (`update_clipped`)
/// instead of a pass that rewrites every gradient.
pub struct ClipOutcome {
    /// The norm before clipping (finite).
    pub norm: f64,
    /// (1) the factor, 1 when nothing is clipped.
    pub factor: Tensor,
    /// Each gradient's Σ g² before clipping (0 for a None), where the backend
    /// reports them (the CPU): the per-part norms of the training diagnostics.
    pub squares: Option<Vec<f64>>,
}

/// grads -> their norm, clip factor and squares (see [`ClipOutcome`]). A
/// non-finite norm is an error: the step must not be applied.
pub fn grad_norm_for_clip(grads: &[Option<Tensor>], max_norm: f64) -> Result<ClipOutcome> {
    let present: Vec<&Tensor> = grads.iter().flatten().collect();
    let Some(first) = present.first() else {
        return Ok(ClipOutcome { norm: 0.0, factor: Tensor::from_vec(vec![1.0f64], &[1])?, squares: Some(vec![0.0; grads.len()]) });
    };
    let clip = backend::of(first).grad_clip(&present, max_norm)?;
    if !clip.norm.is_finite() {
        return Err(Error::Numerical(format!("the gradient norm is {}", clip.norm)));
    }
    // Spread the present gradients' squares back over every slot.
    let squares = clip.squares.map(|present| {
        let mut next = present.into_iter();
        grads.iter().map(|g| if g.is_some() { next.next().unwrap_or(0.0) } else { 0.0 }).collect()
    });
    Ok(ClipOutcome { norm: clip.norm, factor: clip.factor, squares })
}
