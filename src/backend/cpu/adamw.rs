//! The optimizer's CPU kernels: the sum of squares behind the global
//! gradient norm, and the AdamW update (src/optim/adamw.rs has the formula).

use rayon::prelude::*;

use crate::backend::AdamWScalars;
use crate::tensor::Float;

/// g (n) -> Σ g², accumulated in f64 whatever the float type.
pub fn sum_of_squares<T: Float>(g: &[T]) -> f64 {
    g.iter()
        .map(|&v| {
            let v = v.to_f64();
            v * v
        })
        .sum()
}

/// One update's constants in the kernel's float type, computed in f64 first
/// (the device's launcher does the same in f32), so the two agree.
pub struct AdamWHyper<T> {
    decay_factor: T,
    beta1: T,
    beta2: T,
    one_minus_beta1: T,
    one_minus_beta2: T,
    step_size: T,
    inv_sqrt_bias2: T,
    eps: T,
}

impl<T: Float> AdamWHyper<T> {
    pub fn new(s: &AdamWScalars) -> Self {
        let bias1 = 1.0 - s.beta1.powi(s.step as i32);
        let bias2 = 1.0 - s.beta2.powi(s.step as i32);
        AdamWHyper {
            decay_factor: T::from_f64(1.0 - s.lr * s.weight_decay),
            beta1: T::from_f64(s.beta1),
            beta2: T::from_f64(s.beta2),
            one_minus_beta1: T::from_f64(1.0 - s.beta1),
            one_minus_beta2: T::from_f64(1.0 - s.beta2),
            step_size: T::from_f64(s.lr / bias1),
            inv_sqrt_bias2: T::from_f64(1.0 / bias2.sqrt()),
            eps: T::from_f64(s.eps),
        }
    }
}

/// p, g, m, v (n): p, m and v updated in place, in parallel chunks, with
/// each gradient element multiplied by `grad_scale` first (1 leaves it exact).
pub fn adamw_update<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamWHyper<T>, grad_scale: T) {
    const CHUNK: usize = 1 << 14;
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK))).for_each(
        |((p, g), (m, v))| {
            for i in 0..p.len() {
                let gi = g[i] * grad_scale;
                p[i] *= h.decay_factor;
                m[i] = h.beta1 * m[i] + h.one_minus_beta1 * gi;
                v[i] = h.beta2 * v[i] + h.one_minus_beta2 * gi * gi;
                let denom = v[i].sqrt() * h.inv_sqrt_bias2 + h.eps;
                p[i] -= h.step_size * m[i] / denom;
            }
        },
    );
}
