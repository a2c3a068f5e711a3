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
//! - [`multilabel`]: multi-label classification (indicator matrices) —
//!   per-label, micro / macro / weighted / samples averages, subset accuracy
//!   and Hamming loss as one [`MultiLabelReport`]; per-label F1-best
//!   decision thresholds.
//! - [`entity`]: entity-level (NER) precision, recall and F1 as seqeval
//!   computes them, in its default or strict-IOB2 mode, as one [`EntityReport`].
//! - [`calibration`]: expected calibration error, reliability bins,
//!   temperature scaling, precision-recall curves and average precision.
//! - [`regression`]: Pearson and Spearman correlation (scipy's) and mean
//!   squared error.
//! - [`evaluation`]: one evaluation's results as plain data ([`Evaluation`]),
//!   with the decision rules applied again without a forward pass.

pub mod calibration;
pub mod classification;
pub mod entity;
pub mod evaluation;
pub mod multilabel;
pub mod regression;
mod report;

pub use classification::{ClassificationReport, Scores, classification_report};
pub use entity::{Entity, EntityReport, EntityScheme, entity_report, extract_entities};
pub use evaluation::{Evaluation, RegressionScores, TaskReport};
pub use multilabel::{MultiLabelReport, best_f1_threshold, multilabel_report, rare_labels, tune_thresholds, tune_thresholds_pooling_rare};
pub use regression::{mse, pearson, spearman};
