//! Losses on the tape. Each produces a scalar (shape [1]).

use super::on_device::{self, LossKind};
use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::cpu::activation::scale;
use crate::backend::cpu::loss as cpu;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::with_float;

pub use cpu::IGNORE_INDEX;

/// Saves dlogits for a unit upstream gradient; backward scales it by dout.
struct ScaledGrad {
    name: &'static str,
    dinput: Tensor,
}

impl Backward for ScaledGrad {
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(&self, dout: &Tensor, _: &BackwardContext) -> Result<Vec<Option<Tensor>>> {
        let d = with_float!(dout.dtype(), "loss", |T| {
            let g = dout.data::<T>()?[0];
            Tensor::from_vec(scale(self.dinput.data::<T>()?, g), self.dinput.shape())
        })?;
        Ok(vec![Some(d)])
    }
}

/// logits (N, C), targets (N) with −100 ignored, optional class weights (C) -> mean loss.
pub fn cross_entropy(tape: &mut Tape, logits: Var, targets: &[i64], class_weights: Option<&[f64]>) -> Result<Var> {
    let t = tape.value(logits);
    let (rows, classes) = t.rows_cols();
    if rows != targets.len() {
        return Err(Error::shape("cross_entropy", format!("logits {:?} with {} targets", t.shape(), targets.len())));
    }
    if let Some(&bad) = targets.iter().find(|&&y| y != IGNORE_INDEX && (y < 0 || y as usize >= classes)) {
        return Err(Error::InvalidArgument(format!("cross_entropy: label {bad} is outside 0..{classes}")));
    }
    if let Some(w) = class_weights {
        if w.len() != classes {
            return Err(Error::shape("cross_entropy", format!("{} class weights for {classes} classes", w.len())));
        }
    }
    if t.is_on_device() {
        return on_device::loss_op(tape, logits, LossKind::CrossEntropy { targets, class_weights });
    }
    let (loss, d) = with_float!(t.dtype(), "cross_entropy", |T| {
        let w: Option<Vec<T>> = class_weights.map(|w| w.iter().map(|&v| v as T).collect());
        let (loss, d) = cpu::cross_entropy(t.data::<T>()?, targets, classes, w.as_deref());
        Ok((Tensor::from_vec(vec![loss], &[1])?, Tensor::from_vec(d, t.shape())?))
    })?;
    Ok(tape.push(loss, &[logits], ScaledGrad { name: "cross_entropy", dinput: d }))
}

/// logits (N, C), targets (N, C) in [0, 1] -> mean over all elements.
pub fn bce_with_logits(tape: &mut Tape, logits: Var, targets: &[f64]) -> Result<Var> {
    let t = tape.value(logits);
    if t.numel() != targets.len() {
        return Err(Error::shape("bce_with_logits", format!("logits {:?} with {} targets", t.shape(), targets.len())));
    }
    if t.is_on_device() {
        return on_device::loss_op(tape, logits, LossKind::BceWithLogits { targets });
    }
    let (loss, d) = with_float!(t.dtype(), "bce_with_logits", |T| {
        let y: Vec<T> = targets.iter().map(|&v| v as T).collect();
        let (loss, d) = cpu::bce_with_logits(t.data::<T>()?, &y);
        Ok((Tensor::from_vec(vec![loss], &[1])?, Tensor::from_vec(d, t.shape())?))
    })?;
    Ok(tape.push(loss, &[logits], ScaledGrad { name: "bce_with_logits", dinput: d }))
}

/// predictions (N…) and targets (N) -> mean squared error.
pub fn mse(tape: &mut Tape, predictions: Var, targets: &[f64]) -> Result<Var> {
    let t = tape.value(predictions);
    if t.numel() != targets.len() {
        return Err(Error::shape("mse", format!("predictions {:?} with {} targets", t.shape(), targets.len())));
    }
    if t.is_on_device() {
        return on_device::loss_op(tape, predictions, LossKind::Mse { targets });
    }
    let (loss, d) = with_float!(t.dtype(), "mse", |T| {
        let y: Vec<T> = targets.iter().map(|&v| v as T).collect();
        let (loss, d) = cpu::mse(t.data::<T>()?, &y);
        Ok((Tensor::from_vec(vec![loss], &[1])?, Tensor::from_vec(d, t.shape())?))
    })?;
    Ok(tape.push(loss, &[predictions], ScaledGrad { name: "mse", dinput: d }))
}
