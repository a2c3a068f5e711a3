//! Calibration and ranking of predicted probabilities: expected calibration
//! error over equal-width confidence bins, the reliability diagram's bins,
//! temperature scaling, and scikit-learn's precision-recall curve and
//! average precision.
//!
//! - **ECE** (Guo et al., 2017): the samples' top-label confidences fall in
//!   M equal bins ((k−1)/M, k/M] (a confidence of exactly 0 goes to the
//!   first); ECE = Σ_k (n_k / n)·|accuracy_k − mean confidence_k|.
//! - **Temperature scaling**: one T > 0 dividing every logit, chosen to
//!   minimise the mean negative log-likelihood on held-out data. The argmax
//!   does not move, so accuracy is unchanged; only the confidences do.
//! - **Precision-recall curve**: `sklearn.metrics.precision_recall_curve`:
//!   one point per distinct score (thresholds ascending, every one kept, as
//!   scikit-learn ≥ 1.3 does), then the point (precision 1, recall 0). **Average precision**: Σ_n (R_n − R_{n−1})·P_n
//!   (`sklearn.metrics.average_precision_score`, no interpolation).

use crate::numerics::{argmax, log_sum_exp, softmax};

/// The bins of the reliability diagram and of ECE.
pub const ECE_BINS: usize = 15;

/// One confidence bin.
#[derive(Clone, Debug, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Fraction of the bin's samples predicted right (0 when empty).
    pub accuracy: f64,
    /// Mean confidence of the bin's samples (0 when empty).
    pub confidence: f64,
}

/// The bin of a confidence in [0, 1] among `bins` equal bins ((k−1)/M, k/M].
fn bin_of(confidence: f64, bins: usize) -> usize {
    let k = (confidence * bins as f64).ceil() as usize;
    k.clamp(1, bins) - 1
}

/// `bins` equal-width bins of the confidences, with each bin's accuracy.
pub fn reliability_bins(confidence: &[f64], correct: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut count = vec![0usize; bins];
    let mut right = vec![0usize; bins];
    let mut conf_sum = vec![0.0f64; bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let k = bin_of(c, bins);
        count[k] += 1;
        right[k] += ok as usize;
        conf_sum[k] += c;
    }
    (0..bins)
        .map(|k| ReliabilityBin {
            lower: k as f64 / bins as f64,
            upper: (k + 1) as f64 / bins as f64,
            count: count[k],
            accuracy: if count[k] == 0 { 0.0 } else { right[k] as f64 / count[k] as f64 },
            confidence: if count[k] == 0 { 0.0 } else { conf_sum[k] / count[k] as f64 },
        })
        .collect()
}

/// Expected calibration error of top-label confidences over `bins` bins (0 for no samples).
pub fn expected_calibration_error(confidence: &[f64], correct: &[bool], bins: usize) -> f64 {
    let n = confidence.len().min(correct.len());
    if n == 0 {
        return 0.0;
    }
    reliability_bins(confidence, correct, bins).iter().map(|b| b.count as f64 / n as f64 * (b.accuracy - b.confidence).abs()).sum()
}

/// Softmax of each row of logits divided by `temperature`.
pub fn softmax_rows(logits: &[Vec<f64>], temperature: f64) -> Vec<Vec<f64>> {
    logits.iter().map(|row| softmax(&row.iter().map(|v| v / temperature).collect::<Vec<f64>>())).collect()
}

/// Top-label confidence and whether it is right, per sample.
pub fn top_label(probabilities: &[Vec<f64>], labels: &[usize]) -> (Vec<f64>, Vec<bool>) {
    probabilities
        .iter()
        .zip(labels)
        .map(|(p, &y)| {
            let best = argmax(p);
            (p[best], best == y)
        })
        .unzip()
}

/// ECE of softmax(logits / temperature) against `labels`.
pub fn ece_of_logits(logits: &[Vec<f64>], labels: &[usize], temperature: f64) -> f64 {
    let (conf, correct) = top_label(&softmax_rows(logits, temperature), labels);
    expected_calibration_error(&conf, &correct, ECE_BINS)
}

/// Mean negative log-likelihood of `labels` under softmax(logits / temperature).
pub fn mean_nll(logits: &[Vec<f64>], labels: &[usize], temperature: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(row, &y)| {
            let scaled: Vec<f64> = row.iter().map(|v| v / temperature).collect();
            log_sum_exp(&scaled) - scaled[y]
        })
        .sum();
    total / logits.len().max(1) as f64
}

/// The temperature that minimises the mean NLL, by golden-section search on
/// log T over [1/100, 100] (the NLL is convex in 1/T, so unimodal in log T).
/// No samples: 1.
pub fn fit_temperature(logits: &[Vec<f64>], labels: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| mean_nll(logits, labels, log_t.exp());
    let (mut lo, mut hi) = ((0.01f64).ln(), (100.0f64).ln());
    let ratio = (5.0f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..80 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = f(b);
        }
    }
    ((lo + hi) / 2.0).exp()
}

/// scikit-learn's precision-recall curve: (precision, recall, thresholds),
/// thresholds ascending over the distinct scores, precision and recall one
/// longer (the last point is precision 1, recall 0). Empty when there is no
/// positive or no sample.
pub fn precision_recall_curve(scores: &[f64], y_true: &[bool]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let positives = y_true.iter().filter(|&&t| t).count();
    if positives == 0 || scores.len() != y_true.len() || scores.iter().any(|s| s.is_nan()) {
        return (Vec::new(), Vec::new(), Vec::new());
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    // Descending thresholds first, then reversed, as scikit-learn returns them.
    let (mut precision, mut recall, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if y_true[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        precision.push(tp as f64 / (tp + fp) as f64);
        recall.push(tp as f64 / positives as f64);
        thresholds.push(threshold);
    }
    precision.reverse();
    recall.reverse();
    thresholds.reverse();
    precision.push(1.0);
    recall.push(0.0);
    (precision, recall, thresholds)
}

/// scikit-learn's average precision: Σ_n (R_n − R_{n−1})·P_n over the
/// curve's points (0 with no positive).
pub fn average_precision(scores: &[f64], y_true: &[bool]) -> f64 {
    let (p, r, _) = precision_recall_curve(scores, y_true);
    // Points are in decreasing recall: R_n − R_{n+1} between neighbours.
    (0..p.len().saturating_sub(1)).map(|k| (r[k] - r[k + 1]) * p[k]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_closed_on_the_right() {
        assert_eq!(bin_of(0.0, 15), 0);
        assert_eq!(bin_of(1.0 / 15.0, 15), 0);
        assert_eq!(bin_of(1.0 / 15.0 + 1e-12, 15), 1);
        assert_eq!(bin_of(1.0, 15), 14);
    }

    #[test]
    fn a_perfectly_calibrated_bin_has_no_error() {
        // Four samples at confidence 0.75, three right.
        let ece = expected_calibration_error(&[0.75; 4], &[true, true, true, false], 15);
        assert!(ece.abs() < 1e-15, "{ece}");
        let ece = expected_calibration_error(&[0.9; 2], &[true, false], 15);
        assert!((ece - 0.4).abs() < 1e-12, "{ece}");
    }

    #[test]
    fn temperature_undoes_a_scaling_of_calibrated_logits() {
        // Labels drawn from softmax(z); the model reports 3z: T ≈ 3 should fit.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..4000u64 {
            let z = [crate::rng::normal(1, 1, i), crate::rng::normal(1, 2, i), 0.0];
            let p = softmax_rows(&[z.to_vec()], 1.0).remove(0);
            let u = crate::rng::uniform(1, 3, i) as f64;
            let y = if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            };
            logits.push(z.iter().map(|v| 3.0 * v).collect());
            labels.push(y);
        }
        let t = fit_temperature(&logits, &labels);
        assert!((t - 3.0).abs() < 0.3, "{t}");
        assert!(mean_nll(&logits, &labels, t) < mean_nll(&logits, &labels, 1.0));
    }
}
