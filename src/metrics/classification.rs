//! Single-label classification metrics with scikit-learn's definitions.
//!
//! [`classification_report`] takes the true and predicted label ids of every
//! sample and the label names in id order, and computes what
//! `sklearn.metrics.classification_report(y_true, y_pred,
//! labels=range(len(names)), target_names=names, zero_division=0)` does,
//! plus the micro average and the confusion matrix.
//!
//! Definitions, per class `c` (tp: true and predicted `c`; fp: predicted `c`
//! but not `c`; fn: `c` but predicted otherwise):
//!
//! - precision = tp / (tp + fp), recall = tp / (tp + fn), support = tp + fn;
//! - F1 = 2·tp / (2·tp + fp + fn), the form scikit-learn uses (≥ 1.3). It
//!   equals 2PR / (P + R) whenever both are defined, and it is 0 (not
//!   undefined) when only one of P and R is undefined but tp + fp + fn > 0;
//! - a 0/0 is 0, scikit-learn's `zero_division=0` (and what its default
//!   `"warn"` returns, with a warning);
//! - every label in the list is reported, even one that never occurs and is
//!   never predicted (all scores 0, support 0), and it counts in the macro
//!   average, as in scikit-learn when `labels=` is passed.
//!
//! Averages: macro is the plain mean over labels; weighted is the mean
//! weighted by support; micro pools tp, fp and fn over labels. Since every id
//! must name a label, micro precision = recall = F1 = accuracy here, which is
//! why scikit-learn prints it as the `accuracy` row. Empty input (which
//! scikit-learn rejects) gives 0 for every score.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::report::{TEXT_DIGITS, average, divide, name_width, per_class_json, scores, scores_json, text_table};
use crate::{Error, Result};

/// Precision, recall, F1 and support of one class, or an average over classes
/// (where support is the number of samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Everything scikit-learn's classification report holds, plus the micro
/// average and the confusion matrix. Build it with [`classification_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    /// Label names in id order.
    pub labels: Vec<String>,
    /// One entry per label, in id order.
    pub per_class: Vec<Scores>,
    /// Fraction of samples predicted right.
    pub accuracy: f64,
    /// Unweighted mean of the per-class scores.
    pub macro_avg: Scores,
    /// Mean of the per-class scores weighted by support.
    pub weighted_avg: Scores,
    /// Scores from tp, fp and fn pooled over classes (all equal to accuracy).
    pub micro_avg: Scores,
    /// `confusion_matrix[t][p]`: samples of true label `t` predicted as `p`
    /// (rows true, columns predicted: scikit-learn's convention).
    pub confusion_matrix: Vec<Vec<usize>>,
}

/// The report for `y_true` and `y_pred` (label ids, one per sample) with
/// label names `labels` (index = id). Mismatched lengths, or an id that is
/// not below `labels.len()`, are an [`Error::InvalidArgument`] naming the
/// sample and the id: the ids often come from user data, and a library does
/// not panic on those.
pub fn classification_report(y_true: &[usize], y_pred: &[usize], labels: &[String]) -> Result<ClassificationReport> {
    if y_true.len() != y_pred.len() {
        return Err(Error::InvalidArgument(format!(
            "classification_report: y_true has {} samples but y_pred has {}",
            y_true.len(),
            y_pred.len()
        )));
    }
    let k = labels.len();
    for (name, ids) in [("y_true", y_true), ("y_pred", y_pred)] {
        if let Some(i) = ids.iter().position(|&id| id >= k) {
            return Err(Error::InvalidArgument(format!(
                "classification_report: {name}[{i}] = {} is not a label id (there are {k} labels)",
                ids[i]
            )));
        }
    }

    // confusion (K, K): rows true, columns predicted
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        confusion[t][p] += 1;
    }
    let n = y_true.len();
    let tp: Vec<usize> = (0..k).map(|c| confusion[c][c]).collect();
    let true_count: Vec<usize> = confusion.iter().map(|row| row.iter().sum()).collect();
    let pred_count: Vec<usize> = (0..k).map(|c| confusion.iter().map(|row| row[c]).sum()).collect();

    let per_class: Vec<Scores> = (0..k).map(|c| scores(tp[c], pred_count[c], true_count[c])).collect();
    let correct: usize = tp.iter().sum();
    // Every sample is counted once in the pooled predictions and once in the
    // pooled truths, because every id names a label.
    let micro_avg = scores(correct, n, n);

    Ok(ClassificationReport {
        labels: labels.to_vec(),
        accuracy: divide(correct, n),
        macro_avg: average(&per_class, None, n),
        weighted_avg: average(&per_class, Some(&true_count), n),
        micro_avg,
        per_class,
        confusion_matrix: confusion,
    })
}

impl ClassificationReport {
    /// The shape of scikit-learn's `classification_report(output_dict=True)`:
    /// one object per label name (`precision`, `recall`, `f1-score`,
    /// `support`), then `accuracy` (a number), `macro avg`, `weighted avg`;
    /// then berth's extras `micro avg`, `confusion_matrix` (rows true) and
    /// `labels` (names in id order).
    ///
    /// Keys are inserted in that order; they stay in it when serialised only
    /// if serde_json's `preserve_order` feature is on (otherwise they come
    /// out sorted). As in scikit-learn, a label named like a later key
    /// (`accuracy`, say) is shadowed by it in the map; `labels` and
    /// `confusion_matrix` still carry every class.
    pub fn to_json(&self) -> Value {
        let mut map = per_class_json(&self.labels, &self.per_class);
        map.insert("accuracy".into(), json!(self.accuracy));
        map.insert("macro avg".into(), scores_json(&self.macro_avg));
        map.insert("weighted avg".into(), scores_json(&self.weighted_avg));
        map.insert("micro avg".into(), scores_json(&self.micro_avg));
        map.insert("confusion_matrix".into(), json!(self.confusion_matrix));
        map.insert("labels".into(), json!(self.labels));
        Value::Object(map)
    }

    /// [`to_text_digits`](Self::to_text_digits) with 4 digits.
    pub fn to_text(&self) -> String {
        self.to_text_digits(TEXT_DIGITS)
    }

    /// An aligned table, character for character scikit-learn's text report
    /// with `digits` decimals (its default is 2), then a blank line and the
    /// confusion matrix, rows true and columns predicted. The micro average
    /// is not printed: it equals the `accuracy` row.
    pub fn to_text_digits(&self, digits: usize) -> String {
        let averages = [("macro avg", &self.macro_avg), ("weighted avg", &self.weighted_avg)];
        let accuracy = Some((self.micro_avg.f1, self.micro_avg.support));
        let mut out = text_table(&self.labels, &self.per_class, accuracy, &averages, digits);
        out.push('\n');
        out.push_str(&self.confusion_text(name_width(&self.labels, digits)));
        out
    }

    /// The confusion matrix as a table: true labels down the side (right
    /// aligned in `width`), predicted labels across, each column as wide as
    /// its name or its largest count.
    fn confusion_text(&self, width: usize) -> String {
        let mut out = String::from("confusion matrix (rows: true label, columns: predicted label)\n\n");
        let col_width: Vec<usize> = (0..self.labels.len())
            .map(|c| {
                let max_count = self.confusion_matrix.iter().map(|row| row[c]).max().unwrap_or(0);
                self.labels[c].chars().count().max(max_count.to_string().len())
            })
            .collect();
        let _ = write!(out, "{:>width$} ", "");
        for (name, w) in self.labels.iter().zip(&col_width) {
            let _ = write!(out, " {name:>w$}");
        }
        out.push('\n');
        for (name, row) in self.labels.iter().zip(&self.confusion_matrix) {
            let _ = write!(out, "{name:>width$} ");
            for (count, w) in row.iter().zip(&col_width) {
                let _ = write!(out, " {count:>w$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn f1_is_zero_when_only_precision_is_undefined() {
        // class 1: support 1, never predicted: P = 0/0 -> 0, R = 0, F1 = 0/1 = 0
        let r = classification_report(&[0, 1], &[0, 0], &names(&["a", "b"])).unwrap();
        assert_eq!(r.per_class[1], Scores { precision: 0.0, recall: 0.0, f1: 0.0, support: 1 });
        assert_eq!(r.per_class[0].f1, 2.0 / 3.0);
    }

    #[test]
    fn empty_input_gives_zeros() {
        let r = classification_report(&[], &[], &names(&["a", "b"])).unwrap();
        assert_eq!(r.accuracy, 0.0);
        assert_eq!(r.macro_avg, Scores { precision: 0.0, recall: 0.0, f1: 0.0, support: 0 });
        assert_eq!(r.weighted_avg, r.macro_avg);
        assert_eq!(r.micro_avg, r.macro_avg);
        assert_eq!(r.confusion_matrix, vec![vec![0, 0], vec![0, 0]]);
        let _ = r.to_text();
    }

    #[test]
    fn no_labels_and_no_samples_is_not_an_error() {
        let r = classification_report(&[], &[], &[]).unwrap();
        assert!(r.per_class.is_empty());
        assert!(r.to_text().contains("accuracy"));
    }
}
