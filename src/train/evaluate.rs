//! Evaluation: the model's outputs over a labelled dataset, its mean loss,
//! and the report of the task's metrics.

use crate::data::align::word_predictions;
use crate::data::longest_first_batches;
use crate::error::{Error, Result};
use crate::metrics::classification::classification_report;
use crate::metrics::entity::{EntityScheme, entity_report};
use crate::metrics::evaluation::{Evaluation, RegressionScores, TaskReport};
use crate::metrics::multilabel::{multilabel_report, tune_thresholds_pooling_rare};
use crate::metrics::regression::{pearson, spearman};
use crate::model::decision::Decision;
use crate::model::{BertClassifier, InferenceWeights};
use crate::numerics::{argmax, log_sum_exp, softplus};
use crate::tensor::Tensor;

use super::dataset::{EncodedDataset, Targets};

/// Runs the model over `data` without dropout, `batch_size` examples at a time.
pub fn evaluate(model: &BertClassifier, data: &EncodedDataset, batch_size: usize, pad_id: u32) -> Result<Evaluation> {
    evaluate_with(model, None, data, batch_size, pad_id, None)
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
    let cache;
    let weights = match device_params {
        Some(params) => InferenceWeights::Device(params),
        None => {
            cache = model.inference_cache(crate::tensor::Precision::Fp32)?;
            InferenceWeights::Cpu(&cache)
        }
    };
    evaluate_weights(model, weights, data, batch_size, pad_id, thresholds)
}

/// As [`evaluate_with`], reading the weights from `weights`: a device's
/// copies, or a CPU cache built for a precision (`WeightCache::build_for`).
pub fn evaluate_weights(
    model: &BertClassifier,
    weights: InferenceWeights<'_>,
    data: &EncodedDataset,
    batch_size: usize,
    pad_id: u32,
    thresholds: Option<&[f64]>,
) -> Result<Evaluation> {
    let lengths: Vec<usize> = data.encodings.iter().map(|e| e.ids.len()).collect();
    let c = model.num_labels();
    // Per row: the logits of the example (sequence heads) or of each real token.
    let mut outputs: Vec<Vec<f64>> = vec![Vec::new(); data.len()];
    for chunk in &longest_first_batches(&lengths, batch_size) {
        let (batch, _) = data.batch(chunk, pad_id);
        let logits = model.infer_logits(weights, &batch)?;
        let per_row = logits.len() / chunk.len().max(1);
        for (row, &i) in chunk.iter().enumerate() {
            let take = if matches!(data.targets, Targets::Token(_)) { data.encodings[i].ids.len() * c } else { per_row };
            outputs[i] = logits[row * per_row..row * per_row + take].to_vec();
        }
    }
    // Chunked documents are scored as documents: their windows' logits combined.
    let outputs = match &data.documents {
        Some(documents) => documents.combine(&outputs),
        None => outputs,
    };
    let n = outputs.len().max(1) as f64;
    match data.gold_targets() {
        Targets::Single(y) => {
            let mut loss = 0.0;
            let decision = Decision::default();
            let predictions: Vec<usize> = outputs
                .iter()
                .zip(y)
                .map(|(x, &label)| {
                    loss += log_sum_exp(x) - x[label];
                    decision.single(x).1
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
                gold_multi: Vec::new(),
                threshold: None,
                temperature: 1.0,
            })
        }
        Targets::Multi(y) => {
            let thresholds = thresholds.map(<[f64]>::to_vec).unwrap_or_else(|| vec![0.5; c]);
            let decision = Decision { thresholds: Some(thresholds.clone()), ..Decision::default() };
            let mut loss = 0.0;
            let (probabilities, predicted): (Vec<Vec<f64>>, Vec<Vec<bool>>) = outputs.iter().map(|x| decision.multi(x)).unzip();
            for (x, t) in outputs.iter().zip(y) {
                // BCE with logits: softplus(x) - t·x, averaged over every label.
                loss += x.iter().zip(t).map(|(&v, &b)| softplus(v) - if b { v } else { 0.0 }).sum::<f64>() / c as f64;
            }
            let report = multilabel_report(y, &predicted, &model.labels)?;
            Ok(Evaluation {
                loss: loss / n,
                report: TaskReport::MultiLabel(report, thresholds),
                predictions: Vec::new(),
                probabilities,
                gold_multi: y.clone(),
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

/// Evaluations decided again under another rule, from their stored outputs
/// (no new forward pass): threshold tuning, calibration and `berth eval`
/// with a trained folder's settings. The rule is [`Decision`].
pub trait Redecide: Sized {
    /// Multi-label: each label's threshold tuned for that label's F1 on this data.
    /// Multi-label: each label's threshold tuned on this data; labels with
    /// fewer than `min_positives` positives share a pooled one.
    fn with_tuned_thresholds(&self, labels: &[String], min_positives: usize) -> Result<Self>;
    /// Multi-label: other thresholds.
    fn with_thresholds(&self, labels: &[String], thresholds: Vec<f64>) -> Result<Self>;
    /// Single-label: another temperature and binary threshold.
    fn with_decision(&self, labels: &[String], threshold: Option<f64>, temperature: f64) -> Result<Self>;
}

impl Redecide for Evaluation {
    /// Multi-label: the same evaluation with each label's threshold tuned for
    /// that label's F1 on this data, labels with fewer than `min_positives`
    /// positives sharing one tuned on their pooled cells
    /// ([`tune_thresholds_pooling_rare`]; from the stored probabilities: no
    /// new forward pass). Other tasks: an error.
    fn with_tuned_thresholds(&self, labels: &[String], min_positives: usize) -> Result<Evaluation> {
        if !matches!(self.report, TaskReport::MultiLabel(..)) {
            return Err(Error::InvalidArgument("thresholds are tuned for multi-label tasks only".into()));
        }
        self.with_thresholds(labels, tune_thresholds_pooling_rare(&self.probabilities, &self.gold_multi, 0.5, min_positives))
    }

    /// Multi-label: the same evaluation with other thresholds (no new forward pass).
    fn with_thresholds(&self, labels: &[String], thresholds: Vec<f64>) -> Result<Evaluation> {
        if !matches!(self.report, TaskReport::MultiLabel(..)) {
            return Err(Error::InvalidArgument("thresholds apply to multi-label tasks only".into()));
        }
        let decision = Decision { thresholds: Some(thresholds.clone()), ..Decision::default() };
        let predicted: Vec<Vec<bool>> = self.probabilities.iter().map(|p| decision.positive(p)).collect();
        let report = multilabel_report(&self.gold_multi, &predicted, labels)?;
        Ok(Evaluation {
            loss: self.loss,
            report: TaskReport::MultiLabel(report, thresholds),
            predictions: Vec::new(),
            probabilities: self.probabilities.clone(),
            gold_multi: self.gold_multi.clone(),
            ..Evaluation::outputs_free()
        })
    }

    /// Single-label: the same evaluation with another decision rule (no new
    /// forward pass): probabilities softmax(logits / temperature), and for two
    /// classes, the second label predicted where its probability ≥ threshold
    /// (None: the argmax).
    fn with_decision(&self, labels: &[String], threshold: Option<f64>, temperature: f64) -> Result<Evaluation> {
        if !matches!(self.report, TaskReport::Classification(_)) {
            return Err(Error::InvalidArgument("a decision threshold and a temperature apply to single-label tasks".into()));
        }
        let gold = &self.gold;
        if threshold.is_some() && labels.len() != 2 {
            return Err(Error::InvalidArgument(format!("a decision threshold needs two classes; this model has {}", labels.len())));
        }
        let decision = Decision { temperature, threshold, thresholds: None };
        let predictions: Vec<usize> = self.logits.iter().map(|x| decision.single(x).1).collect();
        let report = classification_report(gold, &predictions, labels)?;
        Ok(Evaluation {
            loss: self.loss,
            report: TaskReport::Classification(report),
            predictions,
            probabilities: Vec::new(),
            logits: self.logits.clone(),
            gold: gold.clone(),
            gold_multi: Vec::new(),
            threshold,
            temperature,
        })
    }
}
