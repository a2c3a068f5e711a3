//! Evaluation metrics.
//!
//! Metrics read predictions and labels and know nothing of tensors or
//! devices (DESIGN.md): every input here is a plain slice of label ids, and
//! the definitions are scikit-learn's, so a number printed by berth can be
//! checked against `sklearn.metrics` directly.
//!
//! - [`classification`]: single-label classification — per-class precision,
//!   recall, F1 and support, accuracy, macro / weighted / micro averages and
//!   the confusion matrix, as one [`ClassificationReport`].

pub mod classification;

pub use classification::{ClassificationReport, Scores, classification_report, try_classification_report};
