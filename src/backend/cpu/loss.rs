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

// ---------------------------------------------------------------------------
// Focal losses and BCE with pos_weight: the references the CUDA kernels are
// checked against (kernels/loss.cu), with the same reductions as above.
// ---------------------------------------------------------------------------

/// 1 − e^logp without cancellation as e^logp → 1: −expm1(logp).
fn one_minus_exp<T: Float>(logp: T) -> T {
    T::from_f64(-logp.to_f64().exp_m1())
}

/// x^gamma for x ≥ 0 (0^0 = 1, so gamma 0 gives exactly 1).
fn pow<T: Float>(x: T, gamma: f64) -> T {
    T::from_f64(x.to_f64().powf(gamma))
}

/// σ(x), in the branch-stable form `bce_with_logits` uses.
fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// log(1 + e^x), stable for either sign.
fn softplus<T: Float>(x: T) -> T {
    x.max(T::ZERO) + (-x.abs()).exp().ln_1p()
}

/// Softmax focal loss: logits (N, C), targets (N) with −100 ignored, optional
/// per-class alpha (C). FL_i = −α[y_i]·(1 − p_i)^γ·log p_i with p_i =
/// softmax(x_i)[y_i], reduced as Σ FL_i / Σ α[y_i] over rows not ignored, so
/// gamma 0 is exactly `cross_entropy` with class weights alpha. Returns
/// (loss, dlogits (N, C)); no counted rows gives 0 and 0, as there.
///
/// dFL_i/dx_c = α·G·(softmax_c − [c = y]) with G = q^γ·(1 + γ·p·r), where
/// q = 1 − p and r = log p / (p − 1) → 1 as p → 1. Written this way the
/// q^(γ−1) of the textbook form never appears, so p → 1 with γ < 1 stays
/// finite, and gamma 0 gives G = 1 exactly.
pub fn focal_cross_entropy<T: Float>(logits: &[T], targets: &[i64], classes: usize, gamma: f64, alpha: Option<&[T]>) -> (T, Vec<T>) {
    let rows = targets.len();
    let g = T::from_f64(gamma);
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
        let a = alpha.map_or(T::ONE, |a| a[y]);
        let logp = x[y] - log_z;
        let qg = pow(one_minus_exp(logp), gamma);
        let em1 = logp.to_f64().exp_m1();
        let r = if em1 == 0.0 { T::ONE } else { T::from_f64(logp.to_f64() / em1) };
        let k = a * qg * (T::ONE + g * logp.exp() * r);
        total += a * qg * (log_z - x[y]);
        denom += a;
        let d = &mut dlogits[i * classes..(i + 1) * classes];
        for c in 0..classes {
            d[c] = k * (x[c] - log_z).exp();
        }
        d[y] -= k;
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

/// Sigmoid focal loss, mean over all elements: logits and targets (N, C),
/// targets in [0, 1] (soft labels allowed), optional pos_weight (C). Per
/// element, with p = σ(x): p_t = p·y + (1 − p)(1 − y), α_t = α·y + (1 − α)(1 − y)
/// (1 without alpha), B = the BCE term — the stable with-logits form, or
/// with pos_weight (1 − y)·softplus(x) + pw[c]·y·softplus(−x) as in
/// `bce_with_logits_weighted` — and loss = α_t·(1 − p_t)^γ·B. Gamma 0
/// without alpha is exactly `bce_with_logits` (or its weighted form).
///
/// With m = 1 − p_t = p(1 − y) + (1 − p)y: dm/dx = p(1 − p)(1 − 2y), and
/// d loss/dx = α_t·m^γ·(dB/dx + γ·(p(1 − p)/m)·(1 − 2y)·B), where
/// p(1 − p)/m ≤ 2, so no m^(γ−1) blows up as m → 0.
pub fn sigmoid_focal<T: Float>(
    logits: &[T],
    targets: &[T],
    classes: usize,
    gamma: f64,
    alpha: Option<f64>,
    pos_weight: Option<&[T]>,
) -> (T, Vec<T>) {
    let n = T::from_f64(logits.len().max(1) as f64);
    let g = T::from_f64(gamma);
    let two = T::from_f64(2.0);
    let mut total = T::ZERO;
    let mut d = vec![T::ZERO; logits.len()];
    for (i, (&x, &y)) in logits.iter().zip(targets).enumerate() {
        let p = sigmoid(x);
        let pn = sigmoid(-x);
        let (b, db) = match pos_weight {
            None => (x.max(T::ZERO) - x * y + (-x.abs()).exp().ln_1p(), p - y),
            Some(pw) => {
                let w = pw[i % classes.max(1)];
                ((T::ONE - y) * softplus(x) + w * y * softplus(-x), (T::ONE - y) * p - w * y * pn)
            }
        };
        let m = p * (T::ONE - y) + pn * y;
        let mg = pow(m, gamma);
        let at = alpha.map_or(T::ONE, |a| {
            let a = T::from_f64(a);
            a * y + (T::ONE - a) * (T::ONE - y)
        });
        let ratio = if m == T::ZERO { T::ZERO } else { p * pn / m };
        total += at * mg * b;
        d[i] = at * mg * (db + g * ratio * (T::ONE - two * y) * b) / n;
    }
    (total / n, d)
}

/// BCE with logits with PyTorch's `pos_weight` (C): logits and targets
/// (N, C), per element pw[c]·y·softplus(−x) + (1 − y)·softplus(x) (the
/// positive term weighted), mean over all N·C elements.
/// d/dx = ((1 − y)·σ(x) − pw[c]·y·σ(−x)) / (N·C). Without pos_weight this is
/// `bce_with_logits` itself.
pub fn bce_with_logits_weighted<T: Float>(logits: &[T], targets: &[T], classes: usize, pos_weight: Option<&[T]>) -> (T, Vec<T>) {
    let Some(pw) = pos_weight else {
        return bce_with_logits(logits, targets);
    };
    let n = T::from_f64(logits.len().max(1) as f64);
    let mut total = T::ZERO;
    let mut d = vec![T::ZERO; logits.len()];
    for (i, (&x, &y)) in logits.iter().zip(targets).enumerate() {
        let w = pw[i % classes];
        total += (T::ONE - y) * softplus(x) + w * y * softplus(-x);
        d[i] = ((T::ONE - y) * sigmoid(x) - w * y * sigmoid(-x)) / n;
    }
    (total / n, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(seed: u64, n: usize, scale: f64) -> Vec<f64> {
        (0..n as u64).map(|i| crate::rng::normal(seed, 0x6c6f_7373, i) * scale).collect()
    }

    fn uniform(seed: u64, n: usize) -> Vec<f64> {
        (0..n as u64).map(|i| crate::rng::uniform(seed, 0x6c6f_7373, i) as f64).collect()
    }

    /// Labels in 0..classes with every third row ignored.
    fn labels(seed: u64, rows: usize, classes: usize) -> Vec<i64> {
        let u = uniform(seed, rows);
        (0..rows).map(|i| if i % 3 == 1 { IGNORE_INDEX } else { (u[i] * classes as f64) as i64 }).collect()
    }

    /// ‖analytic − central differences‖ / ‖central differences‖ of a scalar loss.
    fn grad_error(x: &[f64], analytic: &[f64], f: impl Fn(&[f64]) -> f64) -> f64 {
        let mut xs = x.to_vec();
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for j in 0..x.len() {
            let h = 1e-6 * x[j].abs().max(1.0);
            xs[j] = x[j] + h;
            let plus = f(&xs);
            xs[j] = x[j] - h;
            let minus = f(&xs);
            xs[j] = x[j];
            let numeric = (plus - minus) / (2.0 * h);
            diff += (analytic[j] - numeric).powi(2);
            norm += numeric * numeric;
        }
        assert!(norm.sqrt() > 1e-3, "vacuous gradient check");
        diff.sqrt() / norm.sqrt()
    }

    #[test]
    fn focal_with_gamma_zero_is_cross_entropy_bit_for_bit() {
        let (rows, classes) = (7, 5);
        let x = normal(1, rows * classes, 3.0);
        let y = labels(2, rows, classes);
        let alpha: Vec<f64> = uniform(3, classes).iter().map(|a| a + 0.5).collect();
        for w in [None, Some(alpha.as_slice())] {
            assert_eq!(focal_cross_entropy(&x, &y, classes, 0.0, w), cross_entropy(&x, &y, classes, w));
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let w32: Option<Vec<f32>> = w.map(|w| w.iter().map(|&v| v as f32).collect());
            assert_eq!(focal_cross_entropy(&x32, &y, classes, 0.0, w32.as_deref()), cross_entropy(&x32, &y, classes, w32.as_deref()));
        }
    }

    #[test]
    fn sigmoid_focal_with_gamma_zero_is_bce_bit_for_bit() {
        let x = normal(4, 24, 4.0);
        for y in [uniform(5, 24), uniform(5, 24).iter().map(|v| v.round()).collect()] {
            assert_eq!(sigmoid_focal(&x, &y, 6, 0.0, None, None), bce_with_logits(&x, &y));
            let pw = [0.5, 2.0, 3.5, 1.0, 0.1, 1.5];
            assert_eq!(sigmoid_focal(&x, &y, 6, 0.0, None, Some(&pw)), bce_with_logits_weighted(&x, &y, 6, Some(&pw)));
            assert_eq!(bce_with_logits_weighted(&x, &y, 6, None), bce_with_logits(&x, &y));
            let (l, d) = bce_with_logits_weighted(&x, &y, 6, Some(&[1.0; 6]));
            let (lb, db) = bce_with_logits(&x, &y);
            assert!((l - lb).abs() <= 1e-12 * lb.abs());
            assert!(d.iter().zip(&db).all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1e-3)));
        }
    }

    #[test]
    fn focal_gradients_match_central_differences() {
        let (rows, classes) = (6, 4);
        let mut x = normal(6, rows * classes, 2.0);
        let y = labels(7, rows, classes);
        // A nearly certain row (p ≈ 1 − 1e-9), where (1 − p)^(γ − 1) would blow up.
        for c in 0..classes {
            x[c] = if y[0] as usize == c { 22.0 } else { 0.0 };
        }
        let alpha: Vec<f64> = uniform(8, classes).iter().map(|a| a + 0.25).collect();
        for gamma in [0.0, 0.5, 1.0, 2.0] {
            for a in [None, Some(alpha.as_slice())] {
                let (_, d) = focal_cross_entropy(&x, &y, classes, gamma, a);
                assert!(d.iter().all(|v| v.is_finite()));
                let e = grad_error(&x, &d, |xs| focal_cross_entropy(xs, &y, classes, gamma, a).0);
                assert!(e <= 1e-6, "gamma {gamma}, alpha {}: relative error {e:e}", a.is_some());
            }
        }
    }

    #[test]
    fn sigmoid_focal_and_pos_weight_gradients_match_central_differences() {
        let n = 20;
        let mut x = normal(9, n, 3.0);
        x[0] = 30.0; // m = 1 − p_t ≈ 1e-13 with y = 1
        let hard: Vec<f64> = uniform(10, n).iter().map(|v| v.round()).collect();
        let mut soft = uniform(11, n);
        soft[0] = 1.0;
        for y in [&hard, &soft] {
            for gamma in [0.0, 0.5, 1.0, 2.0] {
                for alpha in [None, Some(0.25)] {
                    for pw in [None, Some(&[0.5, 2.0, 3.5, 1.0, 0.1][..])] {
                        let (_, d) = sigmoid_focal(&x, y, 5, gamma, alpha, pw);
                        let e = grad_error(&x, &d, |xs| sigmoid_focal(xs, y, 5, gamma, alpha, pw).0);
                        assert!(e <= 1e-6, "gamma {gamma}, alpha {alpha:?}, pos_weight {}: relative error {e:e}", pw.is_some());
                    }
                }
            }
            let pw = [0.5, 2.0, 3.5, 1.0, 0.1];
            let (_, d) = bce_with_logits_weighted(&x, y, 5, Some(&pw));
            let e = grad_error(&x, &d, |xs| bce_with_logits_weighted(xs, y, 5, Some(&pw)).0);
            assert!(e <= 1e-6, "pos_weight: relative error {e:e}");
        }
    }

    #[test]
    fn all_ignored_rows_give_zero_loss_and_gradient() {
        let x = normal(12, 9, 1.0);
        let y = [IGNORE_INDEX; 3];
        for gamma in [0.0, 0.5, 2.0] {
            let (l, d) = focal_cross_entropy(&x, &y, 3, gamma, Some(&[0.2, 0.3, 0.5]));
            assert_eq!(l, 0.0);
            assert!(d.iter().all(|&v| v == 0.0));
        }
    }
}
