//! Multi-label classification metrics with scikit-learn's definitions, and
//! per-label decision thresholds tuned for F1.
//!
//! Inputs are indicator matrices: one row per sample, one `bool` per label
//! (true: the sample has / is predicted to have that label).
//! [`multilabel_report`] computes what
//! `sklearn.metrics.classification_report(y_true, y_pred, target_names=labels,
//! output_dict=True, zero_division=0)` does for indicator input, plus
//! `accuracy_score` (subset accuracy) and `hamming_loss`.
//!
//! Definitions, per label (tp: true and predicted; pred = tp + fp; true = tp + fn):
//!
//! - precision = tp / pred, recall = tp / true, F1 = 2·tp / (true + pred)
//!   (scikit-learn ≥ 1.3), each 0 where its denominator is 0 (`zero_division=0`);
//! - support = the number of samples that have the label;
//! - micro average: the same formulas on tp, pred and true pooled over labels;
//! - macro average: the plain mean over labels (every label counts, including
//!   one that never occurs and is never predicted);
//! - weighted average: the mean weighted by support, or the plain mean when
//!   no label has support (scikit-learn's fallback);
//! - samples average: the same formulas per sample (over that row's labels),
//!   then the plain mean over samples; a row with no true and no predicted
//!   label scores 0 for all three;
//! - every average row carries as support the total number of true labels
//!   (what scikit-learn's report puts there);
//! - subset accuracy: the fraction of rows predicted exactly;
//!   hamming loss: the fraction of (row, label) cells predicted wrong.
//!
//! Empty input (which scikit-learn rejects) gives 0 for every score.
//!
//! [`best_f1_threshold`] picks, for one label's scores, the cut that
//! maximises F1 among the thresholds `sklearn.metrics.precision_recall_curve`
//! returns; [`tune_thresholds`] does it for every label and moves each cut
//! to the midpoint below it (see [`margin_threshold`]).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Scores;
use super::calibration::precision_recall_curve;
use super::report::{TEXT_DIGITS, average, divide, per_class_json, scores, scores_json, text_table};
use crate::{Error, Result};

/// Everything scikit-learn's multi-label classification report holds, plus
/// subset accuracy and Hamming loss. Build it with [`multilabel_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct MultiLabelReport {
    /// Label names in column order.
    pub labels: Vec<String>,
    /// One entry per label, in column order.
    pub per_label: Vec<Scores>,
    /// Scores from tp, fp and fn pooled over labels.
    pub micro_avg: Scores,
    /// Unweighted mean of the per-label scores.
    pub macro_avg: Scores,
    /// Mean of the per-label scores weighted by support.
    pub weighted_avg: Scores,
    /// Mean over samples of each sample's scores.
    pub samples_avg: Scores,
    /// Fraction of samples whose whole label set is predicted exactly.
    pub subset_accuracy: f64,
    /// Fraction of (sample, label) cells predicted wrong.
    pub hamming_loss: f64,
}

/// The report for indicator matrices `y_true` and `y_pred` (one row per
/// sample, one column per entry of `labels`).
///
/// Returns [`Error::InvalidArgument`] when the two have different numbers of
/// rows, or a row's width is not `labels.len()` (the error names the row).
pub fn multilabel_report(y_true: &[Vec<bool>], y_pred: &[Vec<bool>], labels: &[String]) -> Result<MultiLabelReport> {
    if y_true.len() != y_pred.len() {
        return Err(Error::InvalidArgument(format!(
            "multilabel_report: y_true has {} samples but y_pred has {}",
            y_true.len(),
            y_pred.len()
        )));
    }
    let k = labels.len();
    for (name, rows) in [("y_true", y_true), ("y_pred", y_pred)] {
        if let Some(i) = rows.iter().position(|row| row.len() != k) {
            return Err(Error::InvalidArgument(format!(
                "multilabel_report: {name}[{i}] has {} columns but there are {k} labels",
                rows[i].len()
            )));
        }
    }

    let n = y_true.len();
    let (mut tp, mut pred, mut truth) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut samples = Vec::with_capacity(n);
    let (mut exact, mut wrong_cells) = (0usize, 0usize);
    for (t_row, p_row) in y_true.iter().zip(y_pred) {
        let (mut row_tp, mut row_pred, mut row_true, mut row_wrong) = (0, 0, 0, 0);
        for (c, (&t, &p)) in t_row.iter().zip(p_row).enumerate() {
            tp[c] += usize::from(t && p);
            pred[c] += usize::from(p);
            truth[c] += usize::from(t);
            row_tp += usize::from(t && p);
            row_pred += usize::from(p);
            row_true += usize::from(t);
            row_wrong += usize::from(t != p);
        }
        samples.push(scores(row_tp, row_pred, row_true));
        exact += usize::from(row_wrong == 0);
        wrong_cells += row_wrong;
    }

    let per_label: Vec<Scores> = (0..k).map(|c| scores(tp[c], pred[c], truth[c])).collect();
    let total_true: usize = truth.iter().sum();
    let micro_avg = scores(tp.iter().sum(), pred.iter().sum(), total_true);
    Ok(MultiLabelReport {
        labels: labels.to_vec(),
        micro_avg,
        macro_avg: average(&per_label, None, total_true),
        weighted_avg: average(&per_label, Some(&truth), total_true),
        samples_avg: average(&samples, None, total_true),
        per_label,
        subset_accuracy: divide(exact, n),
        hamming_loss: divide(wrong_cells, n * k),
    })
}

impl MultiLabelReport {
    /// The shape of scikit-learn's `classification_report(output_dict=True)`
    /// for indicator input: one object per label name (`precision`, `recall`,
    /// `f1-score`, `support`), then `micro avg`, `macro avg`, `weighted avg`,
    /// `samples avg`; then berth's extras `subset_accuracy` and
    /// `hamming_loss` (numbers). Supports are integers. As in scikit-learn, a
    /// label named like a later key is shadowed by it.
    pub fn to_json(&self) -> Value {
        let mut map = per_class_json(&self.labels, &self.per_label);
        map.insert("micro avg".into(), scores_json(&self.micro_avg));
        map.insert("macro avg".into(), scores_json(&self.macro_avg));
        map.insert("weighted avg".into(), scores_json(&self.weighted_avg));
        map.insert("samples avg".into(), scores_json(&self.samples_avg));
        map.insert("subset_accuracy".into(), json!(self.subset_accuracy));
        map.insert("hamming_loss".into(), json!(self.hamming_loss));
        Value::Object(map)
    }

    /// [`to_text_digits`](Self::to_text_digits) with 4 digits.
    pub fn to_text(&self) -> String {
        self.to_text_digits(TEXT_DIGITS)
    }

    /// scikit-learn's text report for indicator input, character for
    /// character, with `digits` decimals; then a blank line and the lines
    /// `subset accuracy: …` and `hamming loss: …`.
    pub fn to_text_digits(&self, digits: usize) -> String {
        let d = digits;
        let averages = [
            ("micro avg", &self.micro_avg),
            ("macro avg", &self.macro_avg),
            ("weighted avg", &self.weighted_avg),
            ("samples avg", &self.samples_avg),
        ];
        let mut out = text_table(&self.labels, &self.per_label, None, &averages, d);
        out.push('\n');
        // write! into a String cannot fail.
        let _ = writeln!(out, "subset accuracy: {:.d$}", self.subset_accuracy);
        let _ = writeln!(out, "hamming loss: {:.d$}", self.hamming_loss);
        out
    }
}

/// The threshold that maximises F1 when `score >= threshold` is predicted
/// positive, and that F1, as `(threshold, f1)`.
///
/// The candidates are the thresholds `sklearn.metrics.precision_recall_curve`
/// returns: the distinct values of `scores`. At each, precision P = tp /
/// (tp + fp), recall R = tp / (number of positives), and F1 = 2·P·R / (P + R),
/// 0 when P + R = 0. **Ties** (the same F1, bit for bit) go to the largest
/// threshold: it predicts fewer positives for the same F1.
///
/// `None` when `y_true` has no positive (F1 is then 0 at every threshold),
/// when the slices are empty or differ in length, or when a score is NaN.
pub fn best_f1_threshold(scores: &[f64], y_true: &[bool]) -> Option<(f64, f64)> {
    let (precision, recall, thresholds) = precision_recall_curve(scores, y_true);
    let mut best: Option<(f64, f64)> = None;
    // Thresholds ascend: walk them from the largest, and only a strictly
    // better F1 replaces the best, so ties keep the larger threshold.
    for k in (0..thresholds.len()).rev() {
        let (p, r) = (precision[k], recall[k]);
        let f1 = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
        if best.is_none_or(|(_, b)| f1 > b) {
            best = Some((thresholds[k], f1));
        }
    }
    best
}

/// A cut that splits `scores` exactly as `threshold` does, placed halfway
/// between `threshold` and the highest score below it (half of `threshold`
/// when no score is below it and it is positive).
///
/// scikit-learn's thresholds are scores of the tuning examples themselves, so
/// an example that sits on the cut flips when its probability moves by the
/// last bit, as it does between evaluations that pad a batch differently. On
/// GoEmotions that was enough to move dev macro F1 from 0.4782 (training's
/// evaluation) to 0.4760 (`berth eval` of the saved model). The midpoint
/// gives the same predictions on the tuning data with a margin on both sides.
pub fn margin_threshold(scores: &[f64], threshold: f64) -> f64 {
    let below = scores.iter().copied().filter(|&s| s < threshold).fold(f64::NEG_INFINITY, f64::max);
    if below.is_finite() {
        below + (threshold - below) / 2.0
    } else if threshold > 0.0 {
        threshold / 2.0
    } else {
        threshold
    }
}

/// Per label (column of `probs`), the [`best_f1_threshold`] of that column
/// against the same column of `y_true`, moved down to its [`margin_threshold`],
/// or `default` where there is none (no positive for the label).
///
/// `probs` is one row per sample, one score per label; the label count is
/// the width of its first row (no rows: no labels). Malformed input never
/// panics: a label whose column is incomplete (ragged rows, or `y_true` with
/// a different number of rows) also gets `default`.
pub fn tune_thresholds(probs: &[Vec<f64>], y_true: &[Vec<bool>], default: f64) -> Vec<f64> {
    let k = probs.first().map_or(0, Vec::len);
    (0..k)
        .map(|c| {
            if probs.len() != y_true.len() {
                return default;
            }
            let scores: Option<Vec<f64>> = probs.iter().map(|row| row.get(c).copied()).collect();
            let truth: Option<Vec<bool>> = y_true.iter().map(|row| row.get(c).copied()).collect();
            match (scores, truth) {
                (Some(s), Some(t)) => best_f1_threshold(&s, &t).map_or(default, |(threshold, _)| margin_threshold(&s, threshold)),
                _ => default,
            }
        })
        .collect()
}

/// The labels (of `labels` columns) with fewer than `min_positives`
/// positives in `y_true`: those [`tune_thresholds_pooling_rare`] pools.
pub fn rare_labels(y_true: &[Vec<bool>], labels: usize, min_positives: usize) -> Vec<usize> {
    let positives = |c: usize| y_true.iter().filter(|row| row.get(c).copied().unwrap_or(false)).count();
    (0..labels).filter(|&c| positives(c) < min_positives).collect()
}

/// As [`tune_thresholds`], except that a label with fewer than
/// `min_positives` positives in `y_true` does not get a cut of its own:
/// those labels share one, the [`best_f1_threshold`] of all their (row,
/// label) cells pooled (their micro F1), moved to its margin. A cut tuned
/// on one or two positives is mostly noise (on Reuters' 386 tuning
/// documents such cuts fell to 0.001–0.05 and cost more precision on held-out
/// documents than they gained recall); the pooled cut is tuned on all the
/// rare labels' positives together. `default` where the pool has no
/// positive; `min_positives` ≤ 1 is [`tune_thresholds`].
pub fn tune_thresholds_pooling_rare(probs: &[Vec<f64>], y_true: &[Vec<bool>], default: f64, min_positives: usize) -> Vec<f64> {
    let mut thresholds = tune_thresholds(probs, y_true, default);
    if probs.len() != y_true.len() {
        return thresholds;
    }
    let rare = rare_labels(y_true, thresholds.len(), min_positives);
    if rare.is_empty() {
        return thresholds;
    }
    let (mut scores, mut truth) = (Vec::new(), Vec::new());
    for (row, gold) in probs.iter().zip(y_true) {
        for &c in &rare {
            if let (Some(&s), Some(&t)) = (row.get(c), gold.get(c)) {
                scores.push(s);
                truth.push(t);
            }
        }
    }
    let pooled = best_f1_threshold(&scores, &truth).map_or(default, |(t, _)| margin_threshold(&scores, t));
    for c in rare {
        thresholds[c] = pooled;
    }
    thresholds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_few_positives_share_one_pooled_threshold() {
        // Label 0: four positives, tuned alone. Labels 1 and 2: one positive
        // each, which alone would pull their cuts down to 0.1 and 0.15.
        let probs = vec![vec![0.9, 0.1, 0.6], vec![0.8, 0.7, 0.15], vec![0.7, 0.6, 0.7], vec![0.6, 0.05, 0.2], vec![0.2, 0.3, 0.1]];
        let y = vec![
            vec![true, true, false],
            vec![true, false, true],
            vec![true, false, false],
            vec![true, false, false],
            vec![false, false, false],
        ];
        let alone = tune_thresholds(&probs, &y, 0.5);
        assert!(alone[1] < 0.1 && alone[2] < 0.15, "{alone:?}");
        let pooled = tune_thresholds_pooling_rare(&probs, &y, 0.5, 2);
        assert_eq!(pooled[0], alone[0], "a label with enough positives keeps its own cut");
        assert_eq!(pooled[1], pooled[2], "the rare labels share one cut");
        // The shared cut is the best F1 cut of labels 1 and 2's cells pooled
        // (row by row), at its margin: here 0.075, where label 2 alone had 0.125.
        assert_ne!(pooled[2], alone[2]);
        let scores = [0.1, 0.6, 0.7, 0.15, 0.6, 0.7, 0.05, 0.2, 0.3, 0.1];
        let truth = [true, false, false, true, false, false, false, false, false, false];
        let (t, _) = best_f1_threshold(&scores, &truth).unwrap();
        assert_eq!(pooled[1], margin_threshold(&scores, t));
        assert_eq!(tune_thresholds_pooling_rare(&probs, &y, 0.5, 1), alone, "min 1: every label alone");
        // A pool without a positive keeps the default.
        let none = vec![vec![false, false, false]; 5];
        assert_eq!(tune_thresholds_pooling_rare(&probs, &none, 0.5, 2), vec![0.5; 3]);
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ragged_rows_and_wrong_widths_are_errors_naming_the_row() {
        let labels = names(&["a", "b"]);
        let ok = vec![vec![true, false], vec![false, true]];
        let ragged = vec![vec![true, false], vec![false]];
        let err = multilabel_report(&ok, &ragged, &labels).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("y_pred[1] has 1 columns"), "{err}");
        let err = multilabel_report(&ok, &ok, &names(&["a", "b", "c"])).unwrap_err();
        assert!(err.to_string().contains("y_true[0] has 2 columns but there are 3 labels"), "{err}");
        let err = multilabel_report(&ok, &ok[..1], &labels).unwrap_err();
        assert!(err.to_string().contains("2 samples") && err.to_string().contains("has 1"), "{err}");
    }

    #[test]
    fn empty_input_gives_zeros() {
        let r = multilabel_report(&[], &[], &names(&["a"])).unwrap();
        let zero = Scores { precision: 0.0, recall: 0.0, f1: 0.0, support: 0 };
        assert_eq!([r.micro_avg, r.macro_avg, r.weighted_avg, r.samples_avg], [zero; 4]);
        assert_eq!((r.subset_accuracy, r.hamming_loss), (0.0, 0.0));
        let r = multilabel_report(&[], &[], &[]).unwrap();
        assert!(r.to_text().contains("samples avg"));
    }

    #[test]
    fn threshold_ties_go_to_the_largest_threshold() {
        // t = 0.9: P = 1, R = 1/2; t = 0.6: P = 1/2, R = 1: both F1 = 2/3.
        let (t, f1) = best_f1_threshold(&[0.9, 0.8, 0.7, 0.6], &[true, false, false, true]).unwrap();
        assert_eq!((t, f1), (0.9, 2.0 / 3.0));
    }

    #[test]
    fn no_positive_or_bad_input_gives_no_threshold() {
        assert_eq!(best_f1_threshold(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(best_f1_threshold(&[], &[]), None);
        assert_eq!(best_f1_threshold(&[0.1], &[true, false]), None);
        assert_eq!(best_f1_threshold(&[f64::NAN, 0.2], &[true, false]), None);
        assert_eq!(best_f1_threshold(&[0.3, 0.3], &[true, false]), Some((0.3, 2.0 / 3.0)));
    }

    #[test]
    fn margin_threshold_keeps_the_split_with_room_on_both_sides() {
        let scores = [0.9, 0.8, 0.7, 0.6];
        assert!((margin_threshold(&scores, 0.8) - 0.75).abs() < 1e-15);
        // The lowest score: nothing below it, so half of it (everything stays positive).
        assert_eq!(margin_threshold(&scores, 0.6), 0.3);
        assert_eq!(margin_threshold(&[-1.0, -2.0], -2.0), -2.0);
        // Ties below the cut do not matter; the split is the same as at the cut itself.
        let t = margin_threshold(&[0.5, 0.5, 0.2], 0.5);
        assert!(t > 0.2 && t < 0.5);
    }

    #[test]
    fn tune_thresholds_falls_back_to_the_default() {
        let probs = vec![vec![0.9, 0.2], vec![0.1, 0.7]];
        let y = vec![vec![true, false], vec![false, false]];
        // Label 0's best cut is 0.9; the next score below is 0.1, so it moves to 0.5.
        assert_eq!(tune_thresholds(&probs, &y, 0.5), vec![0.5, 0.5]);
        assert_eq!(tune_thresholds(&probs, &y[..1], 0.5), vec![0.5, 0.5]);
        let ragged = vec![vec![0.9, 0.2], vec![0.1]];
        assert_eq!(tune_thresholds(&ragged, &y, 0.5), vec![0.5, 0.5]);
        assert!(tune_thresholds(&[], &[], 0.5).is_empty());
    }
}
