//! The four kinds of fine-tuning task: which head and loss each uses, how its
//! labels are read from a file, and which metric picks its best model.

use std::path::Path;

use crate::data::readers::{Example, LabelSet};
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

/// Joins the names of a row's positive labels where a file gives them as 0/1
/// columns or as a JSON array (a control character no label name holds).
pub const LABEL_LIST_SEPARATOR: char = '\u{1f}';

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

/// Splits a multi-label field into its items: the internal separator where the
/// reader joined 0/1 columns or a JSON array, otherwise `separator`.
pub fn label_items<'a>(raw: &'a str, separator: &str) -> Vec<&'a str> {
    let items: Vec<&str> =
        if raw.contains(LABEL_LIST_SEPARATOR) { raw.split(LABEL_LIST_SEPARATOR).collect() } else { raw.split(separator).collect() };
    items.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// The label set of a multi-label training file when no `--labels` file fixes
/// it: every distinct item, sorted as single-label sets are.
pub fn multi_label_set(examples: &[Example], separator: &str) -> LabelSet {
    let items: Vec<Example> = examples
        .iter()
        .flat_map(|e| {
            let raw = e.label.as_deref().unwrap_or("");
            label_items(raw, separator).into_iter().map(|item| Example { label: Some(item.to_owned()), ..e.clone() }).collect::<Vec<_>>()
        })
        .collect();
    LabelSet::from_examples(&items)
}

/// The 0/1 target row of one multi-label example. An item is a label name, or,
/// when no name matches and it is an integer, a 0-based id into the label set
/// (GoEmotions' files hold ids that index `labels.txt`). An empty field means
/// no label is positive.
pub fn multi_hot(raw: &str, separator: &str, labels: &LabelSet, path: &Path, line: usize) -> Result<Vec<bool>> {
    let mut row = vec![false; labels.len()];
    for item in label_items(raw, separator) {
        let id = match labels.get(item) {
            Some(id) => id,
            None => match item.parse::<i64>() {
                Ok(id) if id >= 0 && (id as usize) < labels.len() => id as usize,
                Ok(id) => {
                    return Err(Error::input(
                        path,
                        line,
                        Some("label"),
                        format!("label id {id} is out of range: there are {} labels (ids 0 to {})", labels.len(), labels.len() - 1),
                    ));
                }
                Err(_) => return labels.id(item, path, line).map(|_| row),
            },
        };
        row[id] = true;
    }
    Ok(row)
}

/// A regression target: a finite number.
pub fn regression_target(raw: &str, path: &Path, line: usize) -> Result<f64> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::input(path, line, Some("label"), format!("a regression target must be a finite number, found `{raw}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> LabelSet {
        LabelSet::from_names(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn multi_hot_reads_names_ids_and_joined_lists() {
        let labels = set(&["admiration", "anger", "joy"]);
        let p = Path::new("f.tsv");
        assert_eq!(multi_hot("2,0", ",", &labels, p, 3).unwrap(), vec![true, false, true]);
        assert_eq!(multi_hot("anger", ",", &labels, p, 3).unwrap(), vec![false, true, false]);
        assert_eq!(multi_hot("joy\u{1f}anger", ",", &labels, p, 3).unwrap(), vec![false, true, true]);
        assert_eq!(multi_hot("", ",", &labels, p, 3).unwrap(), vec![false; 3]);
        let e = multi_hot("1,3", ",", &labels, p, 7).unwrap_err().to_string();
        assert!(e.contains("f.tsv") && e.contains('7') && e.contains("out of range"), "{e}");
        let e = multi_hot("fear", ",", &labels, p, 9).unwrap_err().to_string();
        assert!(e.contains("unknown label `fear`") && e.contains('9'), "{e}");
    }

    #[test]
    fn regression_targets_must_be_finite_numbers() {
        assert_eq!(regression_target(" 3.800", Path::new("s.tsv"), 2).unwrap(), 3.8);
        for bad in ["high", "NaN", "inf", ""] {
            let e = regression_target(bad, Path::new("s.tsv"), 4).unwrap_err().to_string();
            assert!(e.contains("s.tsv") && e.contains('4') && e.contains("number"), "{bad}: {e}");
        }
    }

    #[test]
    fn multi_label_sets_collect_every_item() {
        let ex = |l: &str| Example { text: "t".into(), text_pair: None, label: Some(l.into()), line: 1 };
        let s = multi_label_set(&[ex("b,a"), ex("c"), ex("a\u{1f}d")], ",");
        assert_eq!(s.names(), ["a", "b", "c", "d"]);
    }
}
