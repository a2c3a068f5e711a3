//! `berth-inference.json`: what prediction needs besides the weights and
//! config.json, written beside them by `berth train`: the task, the
//! multi-label thresholds, the binary decision threshold, the fitted
//! temperature, and the token alignment. Transformers ignores the
//! file; a model folder without it predicts with the defaults.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::train::task::Task;

pub const SETTINGS_FILE: &str = "berth-inference.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Multi-label: one probability threshold per label (0.5 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f64>>,
    /// Binary single-label: the second label is predicted where its
    /// probability is at or above this (the argmax when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Single-label: the fitted temperature the logits are divided by before
    /// the softmax (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Token tasks: `first` or `all`, as trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<String>,
}

impl InferenceSettings {
    /// Reads the settings of a model folder; a missing file gives the defaults.
    pub fn read(dir: &Path, num_labels: usize) -> Result<InferenceSettings> {
        let path = dir.join(SETTINGS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(InferenceSettings::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let settings: InferenceSettings =
            serde_json::from_str(&text).map_err(|e| Error::Config { path: path.clone(), message: e.to_string() })?;
        if let Some(t) = &settings.thresholds {
            if t.len() != num_labels {
                return Err(Error::Config { path, message: format!("{} thresholds for {num_labels} labels", t.len()) });
            }
            if let Some(bad) = t.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(Error::Config { path, message: format!("threshold {bad} is not a probability in [0, 1]") });
            }
        }
        if let Some(t) = settings.threshold {
            if num_labels != 2 {
                return Err(Error::Config { path, message: format!("a decision threshold needs two labels; the model has {num_labels}") });
            }
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::Config { path, message: format!("threshold {t} is not a probability in [0, 1]") });
            }
        }
        if let Some(t) = settings.temperature
            && !(t.is_finite() && t > 0.0)
        {
            return Err(Error::Config { path, message: format!("temperature {t} must be a positive number") });
        }
        Ok(settings)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(SETTINGS_FILE), serde_json::to_string_pretty(self).expect("settings serialise").as_bytes())
    }
}
