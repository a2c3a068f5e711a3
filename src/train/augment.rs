//! `--augment FILE`: synthetic training examples that a person produced and
//! reviewed, added to the training set with their provenance kept.
//!
//! The synthetic examples follow the real ones (file by file, in order), so
//! "is this row synthetic" is one comparison. The documented choices:
//! - class weights, the prior head bias and the samplers count a synthetic
//!   example as one example, like a real one (they see the training set the
//!   loss sees); `--augment-weight` scales only the loss;
//! - `--augment-max-share S` keeps a synthetic example only while every
//!   class it carries stays at most S synthetic (a regression example, or a
//!   multi-label one with no label, is held to S of the whole set); the first
//!   examples of each file are kept, so the cut repeats exactly;
//! - evaluation never reads these files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset::{DataSpec, EncodedDataset, Targets};
use super::imbalance::class_counts;
use super::options::TrainConfig;
use crate::data::BerthTokenizer;
use crate::data::readers::LabelSet;
use crate::error::{Error, Result};

/// One `--augment` file as training_state.json records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AugmentRecord {
    pub file: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl AugmentRecord {
    pub fn of(path: &Path) -> Result<AugmentRecord> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(AugmentRecord { file: path.to_path_buf(), size: bytes.len() as u64, sha256: crate::io::sha256_hex(&bytes) })
    }
}

/// What `--augment` added: the synthetic examples follow the real ones.
pub struct Augmentation {
    /// Examples (documents when chunked) and rows of the training file itself.
    pub real_examples: usize,
    pub real_rows: usize,
    /// `--augment-weight`: the synthetic examples' loss scale.
    pub weight: f64,
    /// Synthetic examples added (documents when chunked).
    pub synthetic_examples: usize,
    /// The lines to print, and to keep in the report.
    pub lines: Vec<String>,
}

impl Augmentation {
    /// Whether any synthetic example's loss is scaled.
    pub fn scales_loss(&self) -> bool {
        self.weight != 1.0 && self.synthetic_examples > 0
    }

    /// Per loss row, its scale: `ids` are example (document) ids under a
    /// document loss, else rows. None when no row is scaled.
    pub fn loss_scales(&self, ids: &[usize], documents: bool) -> Option<Vec<f64>> {
        let first_synthetic = if documents { self.real_examples } else { self.real_rows };
        let scales: Vec<f64> = ids.iter().map(|&i| if i >= first_synthetic { self.weight } else { 1.0 }).collect();
        (self.scales_loss() && scales.iter().any(|&s| s != 1.0)).then_some(scales)
    }
}

/// Reads, encodes and appends every `--augment` file to `train`, capped by
/// `--augment-max-share`, and describes what it added.
pub fn add_augmentation(
    config: &TrainConfig,
    spec: &DataSpec,
    labels: &LabelSet,
    tokenizer: &BerthTokenizer,
    train: &mut EncodedDataset,
) -> Result<Augmentation> {
    let (real_examples, real_rows) = (train.documents_len(), train.len());
    let mut augmentation =
        Augmentation { real_examples, real_rows, weight: config.augment_weight, synthetic_examples: 0, lines: Vec::new() };
    if config.augment.is_empty() {
        return Ok(augmentation);
    }
    let names = labels.names();
    let (real_counts, _) = class_counts(train.gold_targets(), names.len());
    let mut synthetic_counts = vec![0usize; names.len()];
    let mut synthetic_total = 0;
    for path in &config.augment {
        let record = AugmentRecord::of(path)?;
        let raw = spec.read(path)?;
        if raw.is_empty() {
            return Err(Error::input(path, 0, None, "--augment: the file holds no examples"));
        }
        let encoded = spec.encode(path, &raw, labels, tokenizer)?;
        let read = encoded.documents_len();
        let keep = match config.augment_max_share {
            Some(share) => capped(encoded.gold_targets(), share, &real_counts, &mut synthetic_counts, real_examples, &mut synthetic_total),
            None => {
                let (counts, _) = class_counts(encoded.gold_targets(), names.len());
                synthetic_counts.iter_mut().zip(counts).for_each(|(s, c)| *s += c);
                synthetic_total += read;
                (0..read).collect()
            }
        };
        let kept = keep.len();
        let cut = match config.augment_max_share {
            Some(share) if kept < read => format!(", {kept} kept under --augment-max-share {share}"),
            _ => String::new(),
        };
        augmentation.lines.push(format!(
            "augment: {}: {read} synthetic examples{cut} ({} bytes, sha256 {})",
            path.display(),
            record.size,
            record.sha256
        ));
        train.append(if kept < read { encoded.select_examples(&keep) } else { encoded });
        augmentation.synthetic_examples += kept;
    }
    augmentation.lines.push(describe_counts(names, &real_counts, &synthetic_counts, real_examples, synthetic_total, config));
    Ok(augmentation)
}

/// The examples of one file kept under the share cap, in file order;
/// updates the running synthetic counts with them.
fn capped(
    targets: &Targets,
    share: f64,
    real: &[usize],
    synthetic: &mut [usize],
    real_total: usize,
    synthetic_total: &mut usize,
) -> Vec<usize> {
    // Would one more synthetic example keep `n_synthetic` of `n_real + n_synthetic` within the share?
    let fits = |n_real: usize, n_synthetic: usize| (n_synthetic + 1) as f64 <= share * (n_real + n_synthetic + 1) as f64 + 1e-9;
    let mut keep = Vec::new();
    for i in 0..targets.len() {
        let classes: Vec<usize> = match targets {
            Targets::Single(y) => vec![y[i]],
            Targets::Multi(y) => y[i].iter().enumerate().filter(|(_, on)| **on).map(|(c, _)| c).collect(),
            Targets::Regression(_) | Targets::Token(_) => Vec::new(),
        };
        let ok = if classes.is_empty() { fits(real_total, *synthetic_total) } else { classes.iter().all(|&c| fits(real[c], synthetic[c])) };
        if ok {
            classes.iter().for_each(|&c| synthetic[c] += 1);
            *synthetic_total += 1;
            keep.push(i);
        }
    }
    keep
}

/// The per-class line: real + synthetic for each class that has synthetic examples.
fn describe_counts(
    names: &[String],
    real: &[usize],
    synthetic: &[usize],
    real_total: usize,
    synthetic_total: usize,
    config: &TrainConfig,
) -> String {
    let what = if config.task == crate::model::task::Task::TokenClassification { "tagged tokens" } else { "examples" };
    let per_class: Vec<String> =
        names.iter().zip(real.iter().zip(synthetic)).filter(|(_, (_, s))| **s > 0).map(|(n, (r, s))| format!("{n} {r} + {s}")).collect();
    let classes = if per_class.is_empty() || names.len() <= 1 {
        String::new()
    } else {
        format!("; per class with synthetic {what} (real + synthetic): {}", per_class.join(", "))
    };
    format!(
        "augment: {real_total} real + {synthetic_total} synthetic examples; synthetic loss weight {}; class weights, the prior bias and the sampler count synthetic examples as examples; evaluation reads none{classes}",
        config.augment_weight
    )
}
