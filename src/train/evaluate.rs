//! Evaluation: the model's outputs over a labelled dataset, its mean loss,
//! and the report of the task's metrics.

use serde_json::{Value, json};

use crate::autograd::Tape;
use crate::data::align::word_predictions;
use crate::error::Result;
use crate::infer::predictor::{argmax, log_sum_exp};
use crate::metrics::calibration::{average_precision, ece_of_logits, softmax_rows};
use crate::metrics::classification::{ClassificationReport, classification_report};
use crate::metrics::entity::{EntityReport, EntityScheme, entity_report};
use crate::metrics::multilabel::{MultiLabelReport, best_f1_threshold, margin_threshold, multilabel_report, tune_thresholds};
use crate::metrics::regression::{pearson, spearman};
use crate::model::params::WeightCache;
use crate::model::{BertClassifier, ForwardMode};
use crate::tensor::Tensor;

use super::dataset::{EncodedDataset, Targets};

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
    fn outputs_free() -> Evaluation {
        Evaluation {
            loss: 0.0,
            report: TaskReport::Regression(RegressionScores { pearson: 0.0, spearman: 0.0, mse: 0.0, count: 0 }),
            predictions: Vec::new(),
            probabilities: Vec::new(),
            logits: Vec::new(),
            gold: Vec::new(),
            threshold: None,
            temperature: 1.0,
        }
    }

    /// The value of a metric by name; the names are [`super::task::Task::metrics`].
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

    /// Multi-label: the same evaluation with each label's threshold tuned for
    /// that label's F1 on this data (from the stored probabilities: no new
    /// forward pass). Other tasks: an error.
    pub fn with_tuned_thresholds(&self, data: &EncodedDataset, labels: &[String]) -> Result<Evaluation> {
        let Targets::Multi(gold) = &data.targets else {
            return Err(crate::error::Error::InvalidArgument("thresholds are tuned for multi-label tasks only".into()));
        };
        self.with_thresholds(data, labels, tune_thresholds(&self.probabilities, gold, 0.5))
    }

    /// Multi-label: the same evaluation with other thresholds (no new forward pass).
    pub fn with_thresholds(&self, data: &EncodedDataset, labels: &[String], thresholds: Vec<f64>) -> Result<Evaluation> {
        let Targets::Multi(gold) = &data.targets else {
            return Err(crate::error::Error::InvalidArgument("thresholds apply to multi-label tasks only".into()));
        };
        let predicted: Vec<Vec<bool>> =
            self.probabilities.iter().map(|p| p.iter().zip(&thresholds).map(|(q, t)| q >= t).collect()).collect();
        let report = multilabel_report(gold, &predicted, labels)?;
        Ok(Evaluation {
            loss: self.loss,
            report: TaskReport::MultiLabel(report, thresholds),
            predictions: Vec::new(),
            probabilities: self.probabilities.clone(),
            ..Evaluation::outputs_free()
        })
    }

    /// Single-label: the same evaluation with another decision rule (no new
    /// forward pass): probabilities softmax(logits / temperature), and for two
    /// classes, the second label predicted where its probability ≥ threshold
    /// (None: the argmax).
    pub fn with_decision(&self, data: &EncodedDataset, labels: &[String], threshold: Option<f64>, temperature: f64) -> Result<Evaluation> {
        let Targets::Single(gold) = &data.targets else {
            return Err(crate::error::Error::InvalidArgument("a decision threshold and a temperature apply to single-label tasks".into()));
        };
        if threshold.is_some() && labels.len() != 2 {
            return Err(crate::error::Error::InvalidArgument(format!(
                "a decision threshold needs two classes; this model has {}",
                labels.len()
            )));
        }
        let probs = softmax_rows(&self.logits, temperature);
        let predictions: Vec<usize> = probs
            .iter()
            .map(|p| match threshold {
                Some(t) => usize::from(p[1] >= t),
                None => argmax(p),
            })
            .collect();
        let report = classification_report(gold, &predictions, labels)?;
        Ok(Evaluation {
            loss: self.loss,
            report: TaskReport::Classification(report),
            predictions,
            probabilities: Vec::new(),
            logits: self.logits.clone(),
            gold: gold.clone(),
            threshold,
            temperature,
        })
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

/// Runs the model over `data` without dropout, `batch_size` examples at a time.
pub fn evaluate(model: &BertClassifier, data: &EncodedDataset, batch_size: usize, pad_id: u32) -> Result<Evaluation> {
    evaluate_with(model, None, data, batch_size, pad_id, None)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// log(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// As [`evaluate`], with the forward passes on a device when `device_params`
/// holds the model's device copies (in store order). Multi-label predictions
/// use `thresholds` (0.5 for every label when None).
pub fn evaluate_with(
    model: &BertClassifier,
    device_params: Option<&[Tensor]>,
    data: &EncodedDataset,
    batch_size: usize,
    pad_id: u32,
    thresholds: Option<&[f64]>,
) -> Result<Evaluation> {
    let cache = if device_params.is_none() { Some(WeightCache::build(&model.params)?) } else { None };
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(data.encodings[i].ids.len()));
    let c = model.num_labels();
    // Per row: the logits of the example (sequence heads) or of each real token.
    let mut outputs: Vec<Vec<f64>> = vec![Vec::new(); data.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let (batch, _) = data.batch(chunk, pad_id);
        let mut tape = Tape::no_grad();
        let out = match device_params {
            Some(params) => model.forward_on(&mut tape, params, &batch, ForwardMode::eval())?,
            None => model.forward_cached(&mut tape, &batch, ForwardMode::eval().skipping_padding(), cache.as_ref())?,
        };
        let logits = tape.value(out.logits).to_f64_vec();
        let per_row = logits.len() / chunk.len().max(1);
        for (row, &i) in chunk.iter().enumerate() {
            let take = if matches!(data.targets, Targets::Token(_)) { data.encodings[i].ids.len() * c } else { per_row };
            outputs[i] = logits[row * per_row..row * per_row + take].to_vec();
        }
    }
    let n = data.len().max(1) as f64;
    match &data.targets {
        Targets::Single(y) => {
            let mut loss = 0.0;
            let predictions: Vec<usize> = outputs
                .iter()
                .zip(y)
                .map(|(x, &label)| {
                    loss += log_sum_exp(x) - x[label];
                    argmax(x)
                })
                .collect();
            let report = classification_report(y, &predictions, &model.labels)?;
            Ok(Evaluation {
                loss: loss / n,
                report: TaskReport::Classification(report),
                predictions,
                probabilities: Vec::new(),
                logits: outputs,
                gold: y.clone(),
                threshold: None,
                temperature: 1.0,
            })
        }
        Targets::Multi(y) => {
            let thresholds = thresholds.map(<[f64]>::to_vec).unwrap_or_else(|| vec![0.5; c]);
            let mut loss = 0.0;
            let probabilities: Vec<Vec<f64>> = outputs.iter().map(|x| x.iter().map(|&v| sigmoid(v)).collect()).collect();
            for (x, t) in outputs.iter().zip(y) {
                // BCE with logits: softplus(x) - t·x, averaged over every label.
                loss += x.iter().zip(t).map(|(&v, &b)| softplus(v) - if b { v } else { 0.0 }).sum::<f64>() / c as f64;
            }
            let predicted: Vec<Vec<bool>> =
                probabilities.iter().map(|p| p.iter().zip(&thresholds).map(|(q, t)| q >= t).collect()).collect();
            let report = multilabel_report(y, &predicted, &model.labels)?;
            Ok(Evaluation {
                loss: loss / n,
                report: TaskReport::MultiLabel(report, thresholds),
                predictions: Vec::new(),
                probabilities,
                ..Evaluation::outputs_free()
            })
        }
        Targets::Regression(y) => {
            let predicted: Vec<f64> = outputs.iter().map(|x| x[0]).collect();
            let mse = predicted.iter().zip(y).map(|(p, t)| (p - t).powi(2)).sum::<f64>() / n;
            let scores = RegressionScores { pearson: pearson(&predicted, y)?, spearman: spearman(&predicted, y)?, mse, count: y.len() };
            Ok(Evaluation {
                loss: mse,
                report: TaskReport::Regression(scores),
                predictions: Vec::new(),
                probabilities: Vec::new(),
                ..Evaluation::outputs_free()
            })
        }
        Targets::Token(y) => {
            let rows = data.token_rows.as_ref().expect("token data carries its sentences");
            let mut predicted_tags: Vec<Vec<String>> = rows.sentences.iter().map(|s| vec!["O".to_string(); s.words.len()]).collect();
            let (mut loss, mut scored) = (0.0, 0usize);
            for (i, (sentence, window)) in rows.rows.iter().enumerate() {
                let tokens: Vec<&[f64]> = outputs[i].chunks(c).collect();
                for (x, &label) in tokens.iter().zip(&y[i]) {
                    if label >= 0 {
                        loss += log_sum_exp(x) - x[label as usize];
                        scored += 1;
                    }
                }
                let token_predictions: Vec<usize> = tokens.iter().map(|x| argmax(x)).collect();
                let words = word_predictions(&data.encodings[i].word_ids, &token_predictions, window.end - window.start);
                for w in window.keep_start..window.keep_end {
                    if let Some(p) = words[w - window.start] {
                        predicted_tags[*sentence][w] = model.labels[p].clone();
                    }
                }
            }
            let gold: Vec<Vec<String>> = rows.sentences.iter().map(|s| s.tags.clone()).collect();
            let report = entity_report(&gold, &predicted_tags, EntityScheme::Default)?;
            Ok(Evaluation {
                loss: loss / scored.max(1) as f64,
                report: TaskReport::Token(report),
                predictions: Vec::new(),
                probabilities: Vec::new(),
                ..Evaluation::outputs_free()
            })
        }
    }
}
