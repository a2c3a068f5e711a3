//! `berth-inference.json`: what prediction needs besides the weights and
//! config.json, written beside them by `berth train`: the task, the
//! multi-label thresholds, the binary decision threshold, the fitted
//! temperature, the token alignment, and how the training data was read
//! (format, columns, header, quoting, label separator, max length), which
//! `eval`, `predict` and `serve` default to. Transformers ignores the
//! file; a model folder without it predicts with the defaults.
//!
//! The file carries `format_version`. A file without it is version 1 (from
//! before the data settings) and loads with today's defaults; a version
//! newer than this binary knows is refused with a clear message.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::data::tokenize::Truncation;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::task::Task;

pub const SETTINGS_FILE: &str = "berth-inference.json";

/// The `format_version` this binary writes and the newest it reads.
/// (3 added `long_text`.)
pub const SETTINGS_FORMAT_VERSION: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSettings {
    /// 1 for files written before the field existed.
    #[serde(default = "legacy_version")]
    pub format_version: u32,
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
    /// How the training data was read: the defaults of `eval`, `predict` and `serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSettings>,
    /// Sequence tasks: inputs longer than the window are read in chunks
    /// (absent: truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_text: Option<ChunkSettings>,
    /// Truncated inputs: `left` keeps the last tokens (absent: `right`, the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation_direction: Option<Truncation>,
}

pub use crate::data::chunks::Aggregate;

/// How a document longer than the model's window is classified: cut into
/// overlapping windows, each classified, their logits combined.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkSettings {
    /// Tokens shared by consecutive windows (`--chunk-stride`).
    pub stride: usize,
    /// At most this many windows per document; the rest is dropped, with a note (`--max-chunks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chunks: Option<usize>,
    pub aggregate: Aggregate,
}

fn legacy_version() -> u32 {
    1
}

impl Default for InferenceSettings {
    fn default() -> Self {
        InferenceSettings {
            format_version: SETTINGS_FORMAT_VERSION,
            task: None,
            thresholds: None,
            threshold: None,
            temperature: None,
            alignment: None,
            data: None,
            long_text: None,
            truncation_direction: None,
        }
    }
}

/// The data options a model was trained with (the `berth train` flags of the same names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub text_column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair_column: Option<String>,
    pub label_column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoting: Option<bool>,
    pub label_separator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_column: Option<usize>,
    /// The effective max length (after clamping to the position table).
    pub max_length: usize,
}

/// The max length when neither a flag nor the model folder says (HF's usual 128).
pub const DEFAULT_MAX_LENGTH: usize = 128;

/// The max length prediction uses for the model in `dir`: `flag` when
/// given, else the effective length it was trained with, else 128; with
/// where the value came from. The settings file is only peeked at here;
/// loading the model reads and checks it whole.
pub fn max_length_for(dir: &Path, flag: Option<usize>) -> (usize, &'static str) {
    let saved = std::fs::read_to_string(dir.join(SETTINGS_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["data"]["max_length"].as_u64())
        .map(|n| n as usize);
    choose(flag, saved, DEFAULT_MAX_LENGTH)
}

/// A value for a command: the flag's when given, else the model's saved
/// one, else the default; with where it came from, for the printed configuration.
pub fn choose<T: Clone>(flag: Option<T>, saved: Option<T>, default: T) -> (T, &'static str) {
    match (flag, saved) {
        (Some(v), _) => (v, "flag"),
        (None, Some(v)) => (v, "berth-inference.json"),
        (None, None) => (default, "default"),
    }
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
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Config { path: path.clone(), message: e.to_string() })?;
        // The version first: a newer file may have fields this binary does not know.
        let version = value.get("format_version").map_or(Some(1), serde_json::Value::as_u64);
        match version {
            Some(v) if (1..=u64::from(SETTINGS_FORMAT_VERSION)).contains(&v) => {}
            Some(v) if v > u64::from(SETTINGS_FORMAT_VERSION) => {
                return Err(Error::Config {
                    path,
                    message: format!(
                        "format_version {v} was written by a newer berth; this one reads versions 1 to {SETTINGS_FORMAT_VERSION}: upgrade berth"
                    ),
                });
            }
            _ => {
                return Err(Error::Config { path, message: format!("format_version {} is not a version number", value["format_version"]) });
            }
        }
        let settings: InferenceSettings =
            serde_json::from_value(value).map_err(|e| Error::Config { path: path.clone(), message: e.to_string() })?;
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
        if settings.truncation_direction == Some(Truncation::None) {
            return Err(Error::Config { path, message: "truncation_direction is \"left\" or \"right\", not \"none\"".into() });
        }
        Ok(settings)
    }

    /// Writes the file, always in the current format version.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let current = InferenceSettings { format_version: SETTINGS_FORMAT_VERSION, ..self.clone() };
        write_atomic(&dir.join(SETTINGS_FILE), serde_json::to_string_pretty(&current).expect("settings serialise").as_bytes())
    }
}
