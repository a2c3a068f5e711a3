//! Evaluation: predictions, mean loss and the classification report.

use crate::autograd::Tape;
use crate::error::Result;
use crate::infer::predictor::{argmax, log_sum_exp};
use crate::metrics::classification::{ClassificationReport, try_classification_report};
use crate::model::params::WeightCache;
use crate::model::{BertClassifier, ForwardMode};

use super::dataset::EncodedDataset;

#[derive(Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub predictions: Vec<usize>,
    pub report: ClassificationReport,
}

impl Evaluation {
    /// The value of a metric by name (accuracy, macro_f1, weighted_f1, loss).
    pub fn metric(&self, name: &str) -> f64 {
        match name {
            "loss" => self.loss,
            "macro_f1" => self.report.macro_avg.f1,
            "weighted_f1" => self.report.weighted_avg.f1,
            _ => self.report.accuracy,
        }
    }
}

/// Runs the model over `data` without dropout, `batch_size` examples at a time.
pub fn evaluate(model: &BertClassifier, data: &EncodedDataset, batch_size: usize, pad_id: u32) -> Result<Evaluation> {
    evaluate_with(model, None, data, batch_size, pad_id)
}

/// As [`evaluate`], with the forward passes on a device when `device_params`
/// holds the model's device copies (in store order).
pub fn evaluate_with(
    model: &BertClassifier,
    device_params: Option<&[crate::tensor::Tensor]>,
    data: &EncodedDataset,
    batch_size: usize,
    pad_id: u32,
) -> Result<Evaluation> {
    let cache = if device_params.is_none() { Some(WeightCache::build(&model.params)?) } else { None };
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(data.encodings[i].ids.len()));
    let mut predictions = vec![0usize; data.len()];
    let mut loss_sum = 0.0;
    for chunk in order.chunks(batch_size.max(1)) {
        let (batch, labels) = data.batch(chunk, pad_id);
        let mut tape = Tape::no_grad();
        let out = match device_params {
            Some(params) => model.forward_on(&mut tape, params, &batch, ForwardMode::eval())?,
            None => model.forward_cached(&mut tape, &batch, ForwardMode::eval(), cache.as_ref())?,
        };
        let logits = tape.value(out.logits).to_f64_vec();
        let c = model.num_labels();
        for (row, (&i, &y)) in chunk.iter().zip(&labels).enumerate() {
            let x = &logits[row * c..(row + 1) * c];
            loss_sum += log_sum_exp(x) - x[y as usize];
            predictions[i] = argmax(x);
        }
    }
    let report = try_classification_report(&data.labels, &predictions, &model.labels)?;
    Ok(Evaluation { loss: loss_sum / data.len().max(1) as f64, predictions, report })
}
