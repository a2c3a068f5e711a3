//! One evaluation's results as plain data: the task's report, the loss, and
//! the per-example outputs that threshold tuning, calibration and the run's
//! report read without another forward pass. `train::evaluate` fills it,
//! and decides it again under a tuned rule (`Redecide`).

use serde_json::{Value, json};

use super::calibration::{average_precision, ece_of_logits, softmax_rows};
use super::classification::ClassificationReport;
use super::entity::EntityReport;
use super::multilabel::{MultiLabelReport, best_f1_threshold, margin_threshold};

/// A regression model's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionScores {
    pub pearson: f64,
    pub spearman: f64,
    pub mse: f64,
    pub count: usize,
}

/// The metrics of one evaluation, by task.
#[derive(Debug, Clone)]
pub enum TaskReport {
    Classification(ClassificationReport),
    /// With the thresholds the predictions used.
    MultiLabel(MultiLabelReport, Vec<f64>),
    Token(EntityReport),
    Regression(RegressionScores),
}

#[derive(Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub report: TaskReport,
    /// Single-label: the predicted class of each example.
    pub predictions: Vec<usize>,
    /// Multi-label: each example's sigmoid probabilities (for threshold tuning).
    pub probabilities: Vec<Vec<f64>>,
    /// Single-label: each example's logits (for the binary threshold,
    /// calibration and the report's curves).
    pub logits: Vec<Vec<f64>>,
    /// Single-label: each example's true class, beside its logits.
    pub gold: Vec<usize>,
    /// Multi-label: each example's true labels, beside its probabilities
    /// (for threshold tuning).
    pub gold_multi: Vec<Vec<bool>>,
    /// Binary single-label: the probability of the second label at or above
    /// which an example is predicted as it (None: the argmax).
    pub threshold: Option<f64>,
    /// Single-label: what the logits are divided by before the softmax (1
    /// unless a temperature was fitted).
    pub temperature: f64,
}

impl Evaluation {
    /// The fields only single-label evaluations fill (logits, gold labels,
    /// threshold, temperature), empty; the rest are placeholders that every
    /// caller sets.
    pub fn outputs_free() -> Evaluation {
        Evaluation {
            loss: 0.0,
            report: TaskReport::Regression(RegressionScores { pearson: 0.0, spearman: 0.0, mse: 0.0, count: 0 }),
            predictions: Vec::new(),
            probabilities: Vec::new(),
            logits: Vec::new(),
            gold: Vec::new(),
            gold_multi: Vec::new(),
            threshold: None,
            temperature: 1.0,
        }
    }

    /// The value of a metric by name; the names are [`crate::model::task::Task::metrics`].
    pub fn metric(&self, name: &str) -> f64 {
        if name == "loss" {
            return self.loss;
        }
        match &self.report {
            TaskReport::Classification(r) => match name {
                "macro_f1" => r.macro_avg.f1,
                "weighted_f1" => r.weighted_avg.f1,
                _ => r.accuracy,
            },
            TaskReport::MultiLabel(r, _) => match name {
                "micro_f1" => r.micro_avg.f1,
                "weighted_f1" => r.weighted_avg.f1,
                "samples_f1" => r.samples_avg.f1,
                "subset_accuracy" => r.subset_accuracy,
                _ => r.macro_avg.f1,
            },
            TaskReport::Token(r) => match name {
                "precision" => r.micro_avg.precision,
                "recall" => r.micro_avg.recall,
                "macro_f1" => r.macro_avg.f1,
                _ => r.micro_avg.f1,
            },
            TaskReport::Regression(r) => match name {
                "spearman" => r.spearman,
                _ => r.pearson,
            },
        }
    }

    /// Binary single-label: the second label's probability threshold with
    /// the best F1 on this data (scikit-learn's precision-recall thresholds;
    /// ties go to the larger, then moved halfway down to the next score, as
    /// multi-label thresholds are: see `margin_threshold`), and that F1. None
    /// when there is no positive.
    pub fn best_binary_threshold(&self) -> Option<(f64, f64)> {
        let (scores, positive) = self.binary_scores()?;
        best_f1_threshold(&scores, &positive).map(|(t, f1)| (margin_threshold(&scores, t), f1))
    }

    /// Binary single-label: the second label's probabilities (at this
    /// evaluation's temperature) and whether each example is of it.
    pub fn binary_scores(&self) -> Option<(Vec<f64>, Vec<bool>)> {
        if self.logits.first().is_none_or(|r| r.len() != 2) {
            return None;
        }
        let scores = softmax_rows(&self.logits, self.temperature).iter().map(|p| p[1]).collect();
        Some((scores, self.gold.iter().map(|&y| y == 1).collect()))
    }

    /// Single-label: the expected calibration error (15 bins) at `temperature`.
    pub fn ece(&self, temperature: f64) -> Option<f64> {
        (!self.logits.is_empty()).then(|| ece_of_logits(&self.logits, &self.gold, temperature))
    }

    /// The thresholds a multi-label evaluation used.
    pub fn thresholds(&self) -> Option<&[f64]> {
        match &self.report {
            TaskReport::MultiLabel(_, t) => Some(t),
            _ => None,
        }
    }

    /// `metrics.json`: the report in its library's JSON shape, plus `eval_loss`.
    pub fn to_json(&self) -> Value {
        let mut value = match &self.report {
            TaskReport::Classification(r) => {
                let mut v = r.to_json();
                if let Some(t) = self.threshold {
                    v["threshold"] = json!(t);
                }
                if !self.logits.is_empty() {
                    let gold = &self.gold;
                    v["ece"] = json!(ece_of_logits(&self.logits, gold, self.temperature));
                    if self.temperature != 1.0 {
                        v["temperature"] = json!(self.temperature);
                        v["ece_before_calibration"] = json!(ece_of_logits(&self.logits, gold, 1.0));
                    }
                    if let Some((scores, positive)) = self.binary_scores() {
                        v["average_precision"] = json!(average_precision(&scores, &positive));
                    }
                }
                v
            }
            TaskReport::MultiLabel(r, thresholds) => {
                let mut v = r.to_json();
                v["thresholds"] = json!(thresholds);
                v
            }
            TaskReport::Token(r) => r.to_json(),
            TaskReport::Regression(r) => json!({"pearson": r.pearson, "spearman": r.spearman, "mse": r.mse, "count": r.count}),
        };
        value["eval_loss"] = json!(self.loss);
        value
    }

    /// The report as text, for the terminal.
    pub fn to_text(&self) -> String {
        match &self.report {
            TaskReport::Classification(r) => r.to_text(),
            TaskReport::MultiLabel(r, _) => r.to_text(),
            TaskReport::Token(r) => r.to_text(),
            TaskReport::Regression(r) => {
                format!("pearson {:.4}\nspearman {:.4}\nmse {:.4}\n({} examples)\n", r.pearson, r.spearman, r.mse, r.count)
            }
        }
    }

    /// The headline metrics, for the training log.
    pub fn log_fields(&self) -> Vec<(&'static str, f64)> {
        let mut fields = vec![("eval_loss", self.loss)];
        match &self.report {
            TaskReport::Classification(r) => {
                fields.extend([("eval_accuracy", r.accuracy), ("eval_macro_f1", r.macro_avg.f1), ("eval_weighted_f1", r.weighted_avg.f1)])
            }
            TaskReport::MultiLabel(r, _) => fields.extend([
                ("eval_macro_f1", r.macro_avg.f1),
                ("eval_micro_f1", r.micro_avg.f1),
                ("eval_samples_f1", r.samples_avg.f1),
                ("eval_subset_accuracy", r.subset_accuracy),
            ]),
            TaskReport::Token(r) => {
                fields.extend([("eval_f1", r.micro_avg.f1), ("eval_precision", r.micro_avg.precision), ("eval_recall", r.micro_avg.recall)])
            }
            TaskReport::Regression(r) => fields.extend([("eval_pearson", r.pearson), ("eval_spearman", r.spearman)]),
        }
        fields
    }
}
