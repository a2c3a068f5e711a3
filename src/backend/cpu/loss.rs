//! Losses, computed from log-softmax (cross-entropy) or in the stable
//! with-logits form (BCE). Each returns the loss and the gradient with
//! respect to the logits for a unit upstream gradient; the tape scales it.

use crate::tensor::Float;

/// The label value that contributes nothing, as in PyTorch.
pub const IGNORE_INDEX: i64 = -100;

/// logits (N, C), targets (N), optional class weights (C).
/// loss = Σ w[y_i]·(−log softmax(x_i)[y_i]) / Σ w[y_i] over rows not ignored
/// (PyTorch's weighted mean). Returns (loss, dlogits (N, C)).
/// With no counted rows the loss is 0 and the gradient 0 (PyTorch gives NaN;
/// a silent NaN would poison training, so we choose 0).
pub fn cross_entropy<T: Float>(logits: &[T], targets: &[i64], classes: usize, weights: Option<&[T]>) -> (T, Vec<T>) {
    let rows = targets.len();
    let mut dlogits = vec![T::ZERO; logits.len()];
    let mut total = T::ZERO;
    let mut denom = T::ZERO;
    for i in 0..rows {
        let y = targets[i];
        if y == IGNORE_INDEX {
            continue;
        }
        let y = y as usize;
        let x = &logits[i * classes..(i + 1) * classes];
        let max = x.iter().copied().fold(T::MIN, T::max);
        let sum_exp: T = x.iter().map(|&v| (v - max).exp()).sum();
        let log_z = max + sum_exp.ln();
        let w = weights.map_or(T::ONE, |w| w[y]);
        total += w * (log_z - x[y]);
        denom += w;
        let d = &mut dlogits[i * classes..(i + 1) * classes];
        for c in 0..classes {
            d[c] = w * (x[c] - log_z).exp();
        }
        d[y] -= w;
    }
    if denom == T::ZERO {
        return (T::ZERO, dlogits);
    }
    let inv = T::ONE / denom;
    for d in dlogits.iter_mut() {
        *d *= inv;
    }
    (total * inv, dlogits)
}

/// Mean over all N·C elements of max(x,0) − x·y + log(1 + e^−|x|).
/// Returns (loss, dlogits) with dlogits = (σ(x) − y) / (N·C).
pub fn bce_with_logits<T: Float>(logits: &[T], targets: &[T]) -> (T, Vec<T>) {
    let n = T::from_f64(logits.len().max(1) as f64);
    let mut total = T::ZERO;
    let mut d = vec![T::ZERO; logits.len()];
    for (i, (&x, &y)) in logits.iter().zip(targets).enumerate() {
        total += x.max(T::ZERO) - x * y + (-x.abs()).exp().ln_1p();
        let sigmoid = if x >= T::ZERO {
            T::ONE / (T::ONE + (-x).exp())
        } else {
            let e = x.exp();
            e / (T::ONE + e)
        };
        d[i] = (sigmoid - y) / n;
    }
    (total / n, d)
}

/// Mean squared error over N elements; dpred = 2(p − t)/N.
pub fn mse<T: Float>(pred: &[T], target: &[T]) -> (T, Vec<T>) {
    let n = T::from_f64(pred.len().max(1) as f64);
    let two = T::from_f64(2.0);
    let mut total = T::ZERO;
    let mut d = vec![T::ZERO; pred.len()];
    for (i, (&p, &t)) in pred.iter().zip(target).enumerate() {
        total += (p - t) * (p - t);
        d[i] = two * (p - t) / n;
    }
    (total / n, d)
}
