//! The four kinds of fine-tuning task: which head and loss each uses, and
//! which metric picks its best model (their labels are read in data::readers).

use crate::error::{Error, Result};
use crate::model::{BertClassifier, HeadKind, ProblemType};

/// `--task`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// One class per example: softmax cross-entropy.
    Classification,
    /// Any number of classes per example: a sigmoid per label, BCE-with-logits.
    MultiLabel,
    /// One class per word (NER): cross-entropy over aligned sub-tokens.
    TokenClassification,
    /// One real value per example (STS-B): MSE.
    Regression,
}

/// The label name a regression head's single output gets (Hugging Face's default).
pub const REGRESSION_LABEL: &str = "LABEL_0";

impl Task {
    pub fn parse(name: &str) -> Result<Task> {
        match name {
            "classification" | "single-label" => Ok(Task::Classification),
            "multi-label" => Ok(Task::MultiLabel),
            "token-classification" | "ner" => Ok(Task::TokenClassification),
            "regression" => Ok(Task::Regression),
            other => Err(Error::InvalidArgument(format!(
                "unknown --task `{other}` (classification, multi-label, token-classification or regression)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::MultiLabel => "multi-label",
            Task::TokenClassification => "token-classification",
            Task::Regression => "regression",
        }
    }

    pub fn head(self) -> HeadKind {
        match self {
            Task::TokenClassification => HeadKind::TokenClassification,
            _ => HeadKind::SequenceClassification,
        }
    }

    pub fn problem_type(self) -> Option<ProblemType> {
        match self {
            Task::Classification => Some(ProblemType::SingleLabel),
            Task::MultiLabel => Some(ProblemType::MultiLabel),
            Task::Regression => Some(ProblemType::Regression),
            Task::TokenClassification => None,
        }
    }

    /// The task a trained model was trained for.
    pub fn of_model(model: &BertClassifier) -> Task {
        match (model.head, model.problem_type) {
            (HeadKind::TokenClassification, _) => Task::TokenClassification,
            (_, Some(ProblemType::MultiLabel)) => Task::MultiLabel,
            (_, Some(ProblemType::Regression)) => Task::Regression,
            _ => Task::Classification,
        }
    }

    /// The metric that picks the best model when `--metric-for-best` is not given.
    pub fn default_metric(self) -> &'static str {
        match self {
            Task::Classification => "accuracy",
            Task::MultiLabel => "macro_f1",
            Task::TokenClassification => "f1",
            Task::Regression => "pearson",
        }
    }

    /// The metrics `--metric-for-best` may name for this task.
    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            Task::Classification => &["accuracy", "macro_f1", "weighted_f1", "loss"],
            Task::MultiLabel => &["macro_f1", "micro_f1", "weighted_f1", "samples_f1", "subset_accuracy", "loss"],
            Task::TokenClassification => &["f1", "precision", "recall", "macro_f1", "loss"],
            Task::Regression => &["pearson", "spearman", "loss"],
        }
    }
}
