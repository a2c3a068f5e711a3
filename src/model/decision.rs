//! The decision rule, written once: how a sequence head's logits become
//! probabilities and a prediction. `berth predict`, `berth eval`, training's
//! evaluation and its threshold tuning and calibration, `berth serve` and
//! `Classifier` all decide through it.
//!
//! Single-label: softmax(logits / temperature); for two classes with a tuned
//! threshold, the second label where its probability is at or above it,
//! otherwise the argmax. Multi-label: a sigmoid per label, positive at or
//! above the label's threshold (0.5 when none was tuned).

use super::settings::InferenceSettings;
use crate::numerics::{argmax, sigmoid, softmax};

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Single-label: what the logits are divided by before the softmax.
    pub temperature: f64,
    /// Binary single-label: the second label's probability threshold (None: the argmax).
    pub threshold: Option<f64>,
    /// Multi-label: one probability threshold per label (None: 0.5 each).
    pub thresholds: Option<Vec<f64>>,
}

impl Default for Decision {
    /// The untuned rule: temperature 1, argmax, thresholds 0.5.
    fn default() -> Decision {
        Decision { temperature: 1.0, threshold: None, thresholds: None }
    }
}

impl Decision {
    /// The rule a trained folder's `berth-inference.json` records.
    pub fn from_settings(settings: &InferenceSettings) -> Decision {
        Decision {
            temperature: settings.temperature.unwrap_or(1.0),
            threshold: settings.threshold,
            thresholds: settings.thresholds.clone(),
        }
    }

    /// Single-label: the probabilities and the predicted class.
    // logits (C) → probabilities (C), class id
    pub fn single(&self, logits: &[f64]) -> (Vec<f64>, usize) {
        let probabilities = softmax(&logits.iter().map(|v| v / self.temperature).collect::<Vec<f64>>());
        let class = self.class_of(&probabilities);
        (probabilities, class)
    }

    /// Single-label: the class for probabilities already computed at this temperature.
    // probabilities (C) → class id
    pub fn class_of(&self, probabilities: &[f64]) -> usize {
        match self.threshold {
            Some(t) if probabilities.len() == 2 => usize::from(probabilities[1] >= t),
            _ => argmax(probabilities),
        }
    }

    /// Multi-label: each label's probability and whether it is predicted.
    // logits (C) → probabilities (C), positive (C)
    pub fn multi(&self, logits: &[f64]) -> (Vec<f64>, Vec<bool>) {
        let probabilities: Vec<f64> = logits.iter().map(|&v| sigmoid(v)).collect();
        let positive = self.positive(&probabilities);
        (probabilities, positive)
    }

    /// Multi-label: which labels the probabilities predict.
    // probabilities (C) → positive (C)
    pub fn positive(&self, probabilities: &[f64]) -> Vec<bool> {
        probabilities.iter().enumerate().map(|(j, &q)| q >= self.thresholds.as_ref().map_or(0.5, |t| t[j])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_one_rule_applies_temperature_threshold_and_per_label_thresholds() {
        let plain = Decision::default();
        let (p, class) = plain.single(&[0.0, 0.4]);
        assert_eq!(class, 1);
        assert!((p[1] - sigmoid(0.4)).abs() < 1e-12);
        // A binary threshold above the probability flips the decision; a temperature flattens it.
        let tuned = Decision { threshold: Some(0.7), ..Decision::default() };
        assert_eq!(tuned.single(&[0.0, 0.4]).1, 0);
        let hot = Decision { temperature: 4.0, ..Decision::default() };
        assert!((hot.single(&[0.0, 0.4]).0[1] - sigmoid(0.1)).abs() < 1e-12);
        // With three classes a threshold does not apply: the argmax decides.
        assert_eq!(tuned.single(&[0.0, 0.4, 2.0]).1, 2);
        let multi = Decision { thresholds: Some(vec![0.9, 0.2]), ..Decision::default() };
        let (q, positive) = multi.multi(&[1.0, -1.0]);
        assert_eq!(positive, vec![false, true], "{q:?}");
        assert_eq!(Decision::default().multi(&[1.0, -1.0]).1, vec![true, false]);
    }
}
