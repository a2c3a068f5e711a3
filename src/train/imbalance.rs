//! A run's answer to class imbalance, set up from its options and training
//! data: the loss (cross-entropy or focal, with class weights) and the
//! sampler that draws each epoch. Both are announced at the start of training.

use super::class_weights::describe;
use super::dataset::Targets;
use super::options::TrainConfig;
use crate::data::sampler::{Sampler, SamplerKind};
use crate::error::Result;
use crate::model::{LossName, LossSpec};

pub struct ImbalanceSetup {
    pub loss: LossSpec,
    pub sampler: Sampler,
    /// Training examples (single-label), positives (multi-label) or scored
    /// tokens (token tasks) per class; empty for regression.
    pub counts: Vec<usize>,
}

/// Examples per class: (counts, rows those counts are out of). Token tasks
/// count scored tokens (the loss's ignored positions are skipped).
pub fn class_counts(targets: &Targets, classes: usize) -> (Vec<usize>, usize) {
    let mut counts = vec![0usize; classes];
    let rows = match targets {
        Targets::Single(y) => {
            y.iter().for_each(|&c| counts[c] += 1);
            y.len()
        }
        Targets::Multi(y) => {
            for row in y {
                row.iter().enumerate().filter(|(_, b)| **b).for_each(|(c, _)| counts[c] += 1);
            }
            y.len()
        }
        Targets::Token(y) => {
            let mut scored = 0;
            for &t in y.iter().flatten().filter(|&&t| t >= 0) {
                counts[t as usize] += 1;
                scored += 1;
            }
            scored
        }
        Targets::Regression(y) => return (Vec::new(), y.len()),
    };
    (counts, rows)
}

impl ImbalanceSetup {
    /// Builds the loss and sampler over the examples `targets` describes
    /// (rows, or chunked documents under a document loss) and prints what they are.
    pub fn new(config: &TrainConfig, targets: &Targets, labels: &[String]) -> Result<ImbalanceSetup> {
        let multi_label = matches!(targets, Targets::Multi(_));
        let (counts, rows) = class_counts(targets, labels.len());
        let class_weights = match &config.class_weights {
            Some(spec) => {
                let w = spec.weights(labels, &counts, rows, multi_label)?;
                let what = if multi_label { "pos_weight per label" } else { "class weights" };
                eprintln!("{what} ({}): {}", spec.text(), describe(labels, &w));
                Some(w)
            }
            None => None,
        };
        let loss = LossSpec { kind: config.loss_kind()?, class_weights }.checked(labels.len(), multi_label)?;
        if config.loss != LossName::Standard {
            eprintln!("loss: {}", loss.describe());
        }
        let kind = config.sampler.clone();
        let sampler = match targets {
            Targets::Multi(sets) => Sampler::for_label_sets(&kind, sets, labels, config.epoch_length, config.seed)?,
            _ => Sampler::new(&kind, targets.len(), targets.class_ids(), labels, config.epoch_length, config.seed)?,
        };
        if kind != SamplerKind::Random || config.epoch_length.is_some() {
            eprintln!("{}", sampler.describe(labels));
        }
        Ok(ImbalanceSetup { loss, sampler, counts })
    }
}
