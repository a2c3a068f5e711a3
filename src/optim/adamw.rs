//! AdamW with decoupled weight decay, step for step as `torch.optim.AdamW`:
//!
//!   p ← p − lr·λ·p
//!   m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
//!   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
//!
//! Biases and LayerNorm weights get no decay (HF Trainer's grouping).
//! Moments are f32 (f64 for an f64 model), and only trainable parameters
//! have them, so frozen parameters cost no optimizer memory.

use crate::backend::{self, AdamWScalars};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// HF Trainer's defaults.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Whether a parameter, by HF name, is exempt from weight decay.
pub fn no_decay(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("LayerNorm") || name.contains("layer_norm")
}

/// The moments of one parameter.
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Tensor,
    pub v: Tensor,
}

#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Number of updates applied so far (t in the bias corrections).
    pub step: u64,
    /// One entry per parameter; None for frozen parameters.
    pub moments: Vec<Option<Moments>>,
    decay: Vec<bool>,
}

impl AdamW {
    /// State for parameters named `names`; `trainable[i]` false means frozen (no state).
    pub fn new(config: AdamWConfig, names: &[String], params: &[Tensor], trainable: &[bool]) -> AdamW {
        let moments = params
            .iter()
            .zip(trainable)
            .map(|(p, &t)| t.then(|| Moments { m: Tensor::zeros(p.shape(), p.dtype()), v: Tensor::zeros(p.shape(), p.dtype()) }))
            .collect();
        AdamW { config, step: 0, moments, decay: names.iter().map(|n| !no_decay(n)).collect() }
    }

    /// Whether parameter `i` gets weight decay (biases and LayerNorm weights do not).
    pub fn decays(&self, i: usize) -> bool {
        self.decay.get(i).copied().unwrap_or(false)
    }

    /// Number of parameters that have optimizer state.
    pub fn state_count(&self) -> usize {
        self.moments.iter().flatten().count()
    }

    /// Applies one update with learning rate `lr`. `grads[i]` None leaves parameter i unchanged.
    pub fn update(&mut self, params: &mut [Tensor], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.update_clipped(params, grads, lr, None, false).map(|_| ())
    }

    /// As [`AdamW::update`] (the same bits), also -> per parameter (Σ Δw²,
    /// Σ w² before the update), measured inside the update; (0, 0) for a
    /// parameter without a gradient or state. Host tensors only.
    pub fn update_measured(&mut self, params: &mut [Tensor], grads: &[Option<Tensor>], lr: f64) -> Result<Vec<(f64, f64)>> {
        Ok(self.update_clipped(params, grads, lr, None, true)?.unwrap_or_default())
    }

    /// The update with each gradient multiplied by `clip` (1), the factor of
    /// [`crate::optim::clip::grad_norm_for_clip`], inside the update: the same
    /// bits as clipping the gradients first, without a pass over them. With
    /// `measure`, -> [`AdamW::update_measured`]'s sums.
    pub fn update_clipped(
        &mut self,
        params: &mut [Tensor],
        grads: &[Option<Tensor>],
        lr: f64,
        clip: Option<&Tensor>,
        measure: bool,
    ) -> Result<Option<Vec<(f64, f64)>>> {
        if params.len() != self.moments.len() || grads.len() != params.len() {
            return Err(Error::shape(
                "AdamW",
                format!("{} parameters, {} gradients, state for {}", params.len(), grads.len(), self.moments.len()),
            ));
        }
        self.step += 1;
        let mut sums = vec![(0.0, 0.0); params.len()];
        for (i, p) in params.iter_mut().enumerate() {
            let scalars = self.scalars(i, lr);
            let (Some(state), Some(g)) = (&mut self.moments[i], &grads[i]) else { continue };
            if g.shape() != p.shape() {
                return Err(Error::shape("AdamW", format!("gradient {:?} for parameter {:?}", g.shape(), p.shape())));
            }
            let backend = backend::of(p);
            if measure {
                sums[i] = backend.adamw_update_measured(p, g, &mut state.m, &mut state.v, &scalars, clip)?;
            } else {
                backend.adamw_update(p, g, &mut state.m, &mut state.v, None, &scalars, clip)?;
            }
        }
        Ok(measure.then_some(sums))
    }

    pub fn scalars(&self, i: usize, lr: f64) -> AdamWScalars {
        AdamWScalars {
            lr,
            weight_decay: if self.decays(i) { self.config.weight_decay } else { 0.0 },
            beta1: self.config.beta1,
            beta2: self.config.beta2,
            eps: self.config.eps,
            step: self.step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two updates on one scalar, checked against the formula written out by hand
    /// (the same arithmetic torch.optim.AdamW performs).
    #[test]
    fn two_steps_match_the_reference_formula() {
        let c = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let names = vec!["w.weight".to_string(), "w.bias".to_string()];
        let mut params = vec![Tensor::from_vec(vec![1.0f64], &[1]).unwrap(), Tensor::from_vec(vec![1.0f64], &[1]).unwrap()];
        let mut opt = AdamW::new(c, &names, &params, &[true, true]);
        let (lr, g1, g2) = (0.1, 0.5, -0.25);
        for g in [g1, g2] {
            let grads = vec![Some(Tensor::from_vec(vec![g], &[1]).unwrap()), Some(Tensor::from_vec(vec![g], &[1]).unwrap())];
            opt.update(&mut params, &grads, lr).unwrap();
        }
        let reference = |decay: f64| {
            let (mut p, mut m, mut v) = (1.0f64, 0.0, 0.0);
            for (t, g) in [(1, g1), (2, g2)] {
                p *= 1.0 - lr * decay;
                m = 0.9 * m + 0.1 * g;
                v = 0.999 * v + 0.001 * g * g;
                let (b1, b2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
                p -= lr / b1 * m / (v.sqrt() / b2.sqrt() + 1e-8);
            }
            p
        };
        assert!((params[0].to_f64_vec()[0] - reference(0.01)).abs() < 1e-14);
        assert!((params[1].to_f64_vec()[0] - reference(0.0)).abs() < 1e-14, "biases are not decayed");
        assert_ne!(params[0].to_f64_vec()[0], params[1].to_f64_vec()[0]);
    }

    #[test]
    fn clipping_inside_the_update_gives_the_bits_of_clipping_first() {
        let names = vec!["a.weight".to_string(), "b.bias".to_string()];
        let start = vec![
            Tensor::from_vec((0..40).map(|i| (i as f32 - 20.0) / 7.0).collect(), &[40]).unwrap(),
            Tensor::from_vec(vec![0.3f32, -0.2, 0.9], &[3]).unwrap(),
        ];
        let grads = vec![
            Some(Tensor::from_vec((0..40).map(|i| ((i * 37 % 11) as f32 - 5.0) * 3.0).collect(), &[40]).unwrap()),
            Some(Tensor::from_vec(vec![40.0f32, -7.0, 2.5], &[3]).unwrap()),
        ];
        let config = AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() };
        let (mut first, mut inside) = (start.clone(), start.clone());
        let (mut opt_first, mut opt_inside) =
            (AdamW::new(config, &names, &start, &[true, true]), AdamW::new(config, &names, &start, &[true, true]));
        for _ in 0..2 {
            let mut clipped = grads.clone();
            let norm = crate::optim::clip_grad_norm(&mut clipped, 1.0).unwrap();
            assert!(norm > 1.0, "the test must clip");
            opt_first.update(&mut first, &clipped, 1e-2).unwrap();
            let clip = crate::optim::clip::grad_norm_for_clip(&grads, 1.0).unwrap();
            assert_eq!(clip.norm, norm);
            let sums = opt_inside.update_clipped(&mut inside, &grads, 1e-2, Some(&clip.factor), true).unwrap().unwrap();
            assert!(sums.iter().all(|&(moved, weight)| moved > 0.0 && weight > 0.0), "{sums:?}");
        }
        for (a, b) in first.iter().zip(&inside) {
            assert_eq!(a.data::<f32>().unwrap(), b.data::<f32>().unwrap());
        }
    }

    #[test]
    fn frozen_parameters_have_no_state_and_do_not_move() {
        let names = vec!["a.weight".to_string(), "b.weight".to_string()];
        let mut params = vec![Tensor::full(&[3], 1.0, crate::tensor::DType::F32), Tensor::full(&[3], 1.0, crate::tensor::DType::F32)];
        let mut opt = AdamW::new(AdamWConfig::default(), &names, &params, &[true, false]);
        assert_eq!(opt.state_count(), 1);
        let grads =
            vec![Some(Tensor::full(&[3], 1.0, crate::tensor::DType::F32)), Some(Tensor::full(&[3], 1.0, crate::tensor::DType::F32))];
        opt.update(&mut params, &grads, 0.1).unwrap();
        assert_eq!(params[1].to_f32_vec(), vec![1.0; 3]);
        assert!(params[0].to_f32_vec()[0] < 1.0);
    }
}
