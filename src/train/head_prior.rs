//! `--head-bias-init prior`: start a new head's bias at what the training
//! labels say before any text is read.
//!
//! A freshly initialised head has a zero bias, so a multi-label head starts
//! by predicting every label with probability 0.5. On data like GoEmotions,
//! where most labels are positive in 1–3% of rows, AdamW then spends
//! thousands of steps (each moving a weight by about the learning rate)
//! pulling every logit down to about −4 before it learns anything about the
//! text. Starting from the label prior removes that phase; it is the
//! initialisation RetinaNet's focal-loss paper (Lin et al., 2017) uses for
//! the same reason.

use super::dataset::Targets;
use super::imbalance::class_counts;

/// The prior bias for each of `num_labels` outputs, from the training targets:
/// - single-label and token tasks: the log of each class's smoothed frequency,
///   centred on zero (softmax ignores a common shift);
/// - multi-label: each label's log-odds of being positive;
/// - regression: the mean target.
///
/// Frequencies use add-one (add-half for multi-label) smoothing, so a class
/// the training data never shows still gets a finite bias.
pub fn prior_bias(targets: &Targets, num_labels: usize) -> Vec<f64> {
    let (counts, rows) = class_counts(targets, num_labels);
    match targets {
        Targets::Single(_) | Targets::Token(_) => {
            let total = (rows + num_labels) as f64;
            let logs: Vec<f64> = counts.iter().map(|&c| ((c + 1) as f64 / total).ln()).collect();
            let mean = logs.iter().sum::<f64>() / num_labels.max(1) as f64;
            logs.iter().map(|l| l - mean).collect()
        }
        Targets::Multi(_) => counts
            .iter()
            .map(|&positives| {
                let p = (positives as f64 + 0.5) / (rows as f64 + 1.0);
                (p / (1.0 - p)).ln()
            })
            .collect(),
        Targets::Regression(values) => {
            let mean = if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 };
            vec![mean; num_labels]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::align::IGNORE_INDEX;
    use crate::numerics::sigmoid;

    #[test]
    fn multi_label_prior_recovers_each_labels_rate() {
        // Label 0 positive in 10 of 100 rows, label 1 in 50, label 2 never.
        let rows: Vec<Vec<bool>> = (0..100).map(|i| vec![i % 10 == 0, i % 2 == 0, false]).collect();
        let bias = prior_bias(&Targets::Multi(rows), 3);
        assert!((sigmoid(bias[0]) - 10.5 / 101.0).abs() < 1e-12);
        assert!((sigmoid(bias[1]) - 50.5 / 101.0).abs() < 1e-12);
        assert!(bias[2].is_finite() && sigmoid(bias[2]) < 0.01);
    }

    #[test]
    fn single_label_prior_gives_softmax_the_class_frequencies() {
        let classes: Vec<usize> = [vec![0; 9000], vec![1; 800], vec![2; 200]].concat();
        let bias = prior_bias(&Targets::Single(classes), 3);
        let z: f64 = bias.iter().map(|b| b.exp()).sum();
        let probs: Vec<f64> = bias.iter().map(|b| b.exp() / z).collect();
        for (p, expected) in probs.iter().zip([9001.0, 801.0, 201.0]) {
            assert!((p - expected / 10003.0).abs() < 1e-12, "{probs:?}");
        }
        assert!(bias.iter().sum::<f64>().abs() < 1e-9, "centred: {bias:?}");
    }

    #[test]
    fn token_prior_skips_ignored_positions_and_regression_uses_the_mean() {
        let rows = vec![vec![IGNORE_INDEX, 0, 0, 1, IGNORE_INDEX], vec![0, 0, 0]];
        let bias = prior_bias(&Targets::Token(rows), 2);
        // counts with add-one: class 0 → 6, class 1 → 2.
        assert!(((bias[0] - bias[1]) - (6.0f64 / 2.0).ln()).abs() < 1e-12);
        assert_eq!(prior_bias(&Targets::Regression(vec![1.0, 2.0, 4.5]), 1), vec![2.5]);
    }
}
