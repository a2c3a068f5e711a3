//! Scalar numerics on host f64 values, shared by inference, evaluation,
//! metrics and serving: one definition each (a leaf: it names nothing else).

/// log Σ exp(x), shifted by the maximum so it cannot overflow.
// x (C) → scalar
pub fn log_sum_exp(x: &[f64]) -> f64 {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Probabilities from logits.
// x (C) → (C)
pub fn softmax(x: &[f64]) -> Vec<f64> {
    let lse = log_sum_exp(x);
    x.iter().map(|v| (v - lse).exp()).collect()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// log(1 + e^x) without overflow.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Index of the largest value (the first, on ties).
// x (C) → index
pub fn argmax(x: &[f64]) -> usize {
    x.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_large_logits_does_not_overflow_and_sums_to_one() {
        let p = softmax(&[1000.0, 999.0, -1000.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-13, "{p:?}");
        assert!((p[0] / p[1] - std::f64::consts::E).abs() < 1e-12);
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn argmax_takes_the_first_of_ties_and_softplus_matches_its_definition() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert!((softplus(0.5) - (1.0 + 0.5f64.exp()).ln()).abs() < 1e-15);
        assert_eq!(softplus(-800.0), 0.0);
        assert!((softplus(800.0) - 800.0).abs() < 1e-12);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }
}
