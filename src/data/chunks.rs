//! How a document longer than the model's window is read back as one: its
//! windows' logits combined per logit (`--aggregate`). Used by prediction,
//! evaluation and the document loss alike, so all three combine the same way.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Why `--long-text chunk` is refused for token models and tasks, in every command.
pub const CHUNKING_IS_FOR_SEQUENCE_TASKS: &str =
    "--long-text chunk is for sequence tasks: a token model reads long sentences in windows of its own (--words)";

/// Tokens shared by consecutive windows when neither a flag, the request nor the model says.
pub const DEFAULT_CHUNK_STRIDE: usize = 32;

/// How the windows' logits become the document's (`--aggregate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The mean of each logit over the windows.
    Mean,
    /// The largest of each logit: for multi-label, "any window mentions it".
    Max,
    /// The first window's logits (what truncation keeps, for comparison).
    First,
}

impl Aggregate {
    pub fn parse(name: &str) -> Result<Aggregate> {
        match name {
            "mean" => Ok(Aggregate::Mean),
            "max" => Ok(Aggregate::Max),
            "first" => Ok(Aggregate::First),
            other => Err(Error::InvalidArgument(format!("--aggregate `{other}`: use mean, max or first"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Mean => "mean",
            Aggregate::Max => "max",
            Aggregate::First => "first",
        }
    }

    /// (C) from the (W, C) rows of one document's windows, W ≥ 1.
    pub fn combine(self, windows: &[Vec<f64>]) -> Vec<f64> {
        let first = windows[0].clone();
        match self {
            Aggregate::First => first,
            Aggregate::Max => windows[1..].iter().fold(first, |acc, w| acc.iter().zip(w).map(|(a, b)| a.max(*b)).collect()),
            Aggregate::Mean => {
                let sum = windows[1..].iter().fold(first, |acc, w| acc.iter().zip(w).map(|(a, b)| a + b).collect());
                sum.into_iter().map(|v| v / windows.len() as f64).collect()
            }
        }
    }
}
