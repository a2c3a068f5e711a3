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

/// Checks a softmax loss's inputs: one target per row, each a class or ignored;
/// `what` weights (C) when given.
fn check_softmax_inputs(op: &'static str, shape: &[usize], targets: &[i64], weights: Option<&[f64]>, what: &str) -> Result<(usize, usize)> {
    let rows = shape.iter().rev().skip(1).product::<usize>();
    let classes = *shape.last().unwrap_or(&0);
    if rows != targets.len() {
        return Err(Error::shape(op, format!("logits {shape:?} with {} targets", targets.len())));
    }
    if let Some(&bad) = targets.iter().find(|&&y| y != IGNORE_INDEX && (y < 0 || y as usize >= classes)) {
        return Err(Error::InvalidArgument(format!("{op}: label {bad} is outside 0..{classes}")));
    }
    if let Some(w) = weights
        && w.len() != classes
    {
        return Err(Error::shape(op, format!("{} {what} for {classes} classes", w.len())));
    }
    Ok((rows, classes))
}

fn check_gamma(op: &str, gamma: f64) -> Result<()> {
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(Error::InvalidArgument(format!("{op}: the focal gamma must be finite and at least 0, got {gamma}")));
    }
    Ok(())
}

/// Softmax focal loss: logits (N, C), targets (N) with −100 ignored, optional
/// per-class alpha (C) -> Σ α[y]·(1 − p)^γ·(−log p) / Σ α[y]; gamma 0 is
/// `cross_entropy` with class weights alpha, bit for bit.
pub fn focal_cross_entropy(tape: &mut Tape, logits: Var, targets: &[i64], gamma: f64, alpha: Option<&[f64]>) -> Result<Var> {
    let op = "focal_cross_entropy";
    check_gamma(op, gamma)?;
    let t = tape.value(logits);
    let (_, classes) = check_softmax_inputs(op, t.shape(), targets, alpha, "alpha values")?;
    if t.is_on_device() {
        return on_device::loss_op(tape, logits, LossKind::Focal { targets, gamma, alpha });
    }
    let (loss, d) = with_float!(t.dtype(), "focal_cross_entropy", |T| {
        let a: Option<Vec<T>> = alpha.map(|w| w.iter().map(|&v| v as T).collect());
        let (loss, d) = cpu::focal_cross_entropy(t.data::<T>()?, targets, classes, gamma, a.as_deref());
        Ok((Tensor::from_vec(vec![loss], &[1])?, Tensor::from_vec(d, t.shape())?))
    })?;
    Ok(tape.push(loss, &[logits], ScaledGrad { name: op, dinput: d }))
}

/// Sigmoid focal loss: logits (N, C), targets (N, C) in [0, 1], scalar alpha
/// for the positives (1 − alpha for the negatives), optional pos_weight (C)
/// -> the mean over all elements of α_t·(1 − p_t)^γ·BCE.
pub fn sigmoid_focal(
    tape: &mut Tape,
    logits: Var,
    targets: &[f64],
    gamma: f64,
    alpha: Option<f64>,
    pos_weight: Option<&[f64]>,
) -> Result<Var> {
    let op = "sigmoid_focal";
    check_gamma(op, gamma)?;
    let t = tape.value(logits);
    let classes = *t.shape().last().unwrap_or(&0);
    check_elementwise_inputs(op, t.numel(), classes, targets, pos_weight)?;
    if t.is_on_device() {
        return on_device::loss_op(tape, logits, LossKind::SigmoidFocal { targets, gamma, alpha, pos_weight });
    }
    let (loss, d) = with_float!(t.dtype(), "sigmoid_focal", |T| {
        let y: Vec<T> = targets.iter().map(|&v| v as T).collect();
        let pw: Option<Vec<T>> = pos_weight.map(|w| w.iter().map(|&v| v as T).collect());
        let (loss, d) = cpu::sigmoid_focal(t.data::<T>()?, &y, classes, gamma, alpha, pw.as_deref());
        Ok((Tensor::from_vec(vec![loss], &[1])?, Tensor::from_vec(d, t.shape())?))
    })?;
    Ok(tape.push(loss, &[logits], ScaledGrad { name: op, dinput: d }))
}

fn check_elementwise_inputs(op: &'static str, numel: usize, classes: usize, targets: &[f64], pos_weight: Option<&[f64]>) -> Result<()> {
    if numel != targets.len() {
        return Err(Error::shape(op, format!("{numel} logits with {} targets", targets.len())));
    }
    if let Some(w) = pos_weight
        && w.len() != classes
    {
        return Err(Error::shape(op, format!("{} pos_weight values for {classes} labels", w.len())));
    }
    Ok(())
}

/// BCE with logits with a per-label `pos_weight` (C), PyTorch's: logits and
/// targets (N, C) -> mean over all elements.
pub fn bce_with_logits_weighted(tape: &mut Tape, logits: Var, targets: &[f64], pos_weight: &[f64]) -> Result<Var> {
    let op = "bce_with_logits_weighted";
    let t = tape.value(logits);
    let classes = *t.shape().last().unwrap_or(&0);
    check_elementwise_inputs(op, t.numel(), classes, targets, Some(pos_weight))?;
    if t.is_on_device() {
        return on_device::loss_op(tape, logits, LossKind::BceWithLogits { targets, pos_weight: Some(pos_weight) });
    }
    let (loss, d) = with_float!(t.dtype(), "bce_with_logits_weighted", |T| {
        let y: Vec<T> = targets.iter().map(|&v| v as T).collect();
        let pw: Vec<T> = pos_weight.iter().map(|&v| v as T).collect();
        let (loss, d) = cpu::bce_with_logits_weighted(t.data::<T>()?, &y, classes, Some(&pw));
        Ok((Tensor::from_vec(vec![loss], &[1])?, Tensor::from_vec(d, t.shape())?))
    })?;
    Ok(tape.push(loss, &[logits], ScaledGrad { name: op, dinput: d }))
}

/// logits (N, C), targets (N, C) in [0, 1] -> mean over all elements.
pub fn bce_with_logits(tape: &mut Tape, logits: Var, targets: &[f64]) -> Result<Var> {
    let t = tape.value(logits);
    if t.numel() != targets.len() {
        return Err(Error::shape("bce_with_logits", format!("logits {:?} with {} targets", t.shape(), targets.len())));
    }
    if t.is_on_device() {
        return on_device::loss_op(tape, logits, LossKind::BceWithLogits { targets, pos_weight: None });
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
