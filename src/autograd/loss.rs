//! Losses on the tape. Each produces a scalar (shape [1]).

use super::{Backward, BackwardContext, Tape, Var};
use crate::backend::{self, LossKind};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub use crate::backend::IGNORE_INDEX;

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
        // dout is the scalar upstream gradient (on a device often a host
        // tensor: the seed). A unit gradient hands dlogits over as they are.
        let g = dout.to_f64_vec().first().copied().unwrap_or(f64::NAN);
        if g == 1.0 {
            return Ok(vec![Some(self.dinput.clone())]);
        }
        Ok(vec![Some(backend::of(&self.dinput).scale(&self.dinput, g)?)])
    }
}

/// Runs the loss kernel on logits and records it with its saved dlogits.
fn record(tape: &mut Tape, logits: Var, kind: LossKind) -> Result<Var> {
    let t = tape.value(logits);
    let (loss, dinput) = backend::of(t).loss(t, kind)?;
    Ok(tape.push(loss, &[logits], ScaledGrad { name: kind.name(), dinput }))
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
    record(tape, logits, LossKind::CrossEntropy { targets, class_weights })
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
    check_softmax_inputs(op, t.shape(), targets, alpha, "alpha values")?;
    record(tape, logits, LossKind::Focal { targets, gamma, alpha })
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
    record(tape, logits, LossKind::SigmoidFocal { targets, gamma, alpha, pos_weight })
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
    record(tape, logits, LossKind::BceWithLogits { targets, pos_weight: Some(pos_weight) })
}

/// logits (N, C), targets (N, C) in [0, 1] -> mean over all elements.
pub fn bce_with_logits(tape: &mut Tape, logits: Var, targets: &[f64]) -> Result<Var> {
    let t = tape.value(logits);
    if t.numel() != targets.len() {
        return Err(Error::shape("bce_with_logits", format!("logits {:?} with {} targets", t.shape(), targets.len())));
    }
    record(tape, logits, LossKind::BceWithLogits { targets, pos_weight: None })
}

/// predictions (N…) and targets (N) -> mean squared error.
pub fn mse(tape: &mut Tape, predictions: Var, targets: &[f64]) -> Result<Var> {
    let t = tape.value(predictions);
    if t.numel() != targets.len() {
        return Err(Error::shape("mse", format!("predictions {:?} with {} targets", t.shape(), targets.len())));
    }
    record(tape, predictions, LossKind::Mse { targets })
}
