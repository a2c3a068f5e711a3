//! Training state beside the model: `training_state.json` (counters, seed,
//! best metric, configuration) and `optimizer.safetensors` (AdamW moments).
//! With the weights, that is everything a resumed run needs to continue
//! exactly: data order and dropout masks are pure functions of the seed and
//! these counters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::checkpoint::{TOKENIZER_FILES, TokenizerFiles, read_safetensors};
use crate::model::{BertClassifier, save_model};
use crate::optim::AdamW;
use crate::tensor::{DType, Tensor};

use super::options::TrainConfig;

pub const STATE_FILE: &str = "training_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainingState {
    /// Optimizer steps taken.
    pub step: u64,
    /// The epoch in progress (0-based).
    pub epoch: u64,
    /// Index of the next micro-batch within the epoch.
    pub batch_in_epoch: usize,
    /// Micro-batches processed since the start; keys the dropout masks.
    pub micro_batches: u64,
    pub total_steps: u64,
    pub warmup_steps: u64,
    /// AdamW's update count (t in its bias corrections).
    pub adam_step: u64,
    pub best_metric: Option<f64>,
    pub best_step: Option<u64>,
    pub evals_without_improvement: usize,
    /// Non-padding tokens trained on so far.
    pub real_tokens: u64,
    /// Training loss summed over the optimizer steps since the last log line,
    /// and their count: saved so a resumed run logs the same averages.
    #[serde(default)]
    pub log_window_loss: f64,
    #[serde(default)]
    pub log_window_steps: u64,
    pub labels: Vec<String>,
    pub config: TrainConfig,
}

/// Writes a complete checkpoint (model, tokenizer, state, optimizer) into a
/// temporary folder and renames it into place, so `dir` is always either the
/// previous complete checkpoint or the new complete one.
pub fn write_checkpoint(
    dir: &Path,
    model: &BertClassifier,
    optimizer: &AdamW,
    state: &TrainingState,
    tokenizer: &TokenizerFiles,
) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    save_model(model, &tmp, DType::F32)?;
    tokenizer.write(&tmp)?;
    write_state(&tmp, state)?;
    write_optimizer(&tmp.join(OPTIMIZER_FILE), model, optimizer)?;
    replace_dir(&tmp, dir)
}

/// Renames `from` to `to`, replacing `to` (moved aside first, then removed).
pub fn replace_dir(from: &Path, to: &Path) -> Result<()> {
    let old = sibling(to, "old");
    if to.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(to, &old).map_err(|e| Error::io(to, e))?;
    }
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// `dir` with `.suffix` appended to its name, in the same parent folder.
pub(crate) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.{suffix}"))
}

pub fn write_state(dir: &Path, state: &TrainingState) -> Result<()> {
    let text = serde_json::to_string_pretty(state).expect("state serialises");
    write_atomic(&dir.join(STATE_FILE), text.as_bytes())
}

pub fn read_state(dir: &Path) -> Result<TrainingState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Checkpoint { path, message: format!("unreadable training state: {e}") })
}

fn write_optimizer(path: &Path, model: &BertClassifier, optimizer: &AdamW) -> Result<()> {
    let mut named: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (i, name) in model.params.names().iter().enumerate() {
        if let Some(m) = &optimizer.moments[i] {
            named.push((format!("m.{name}"), m.m.to_le_bytes(), m.m.shape().to_vec()));
            named.push((format!("v.{name}"), m.v.to_le_bytes(), m.v.shape().to_vec()));
        }
    }
    let dtype = match model.dtype() {
        DType::F64 => safetensors::Dtype::F64,
        _ => safetensors::Dtype::F32,
    };
    let views = named
        .iter()
        .map(|(n, b, s)| safetensors::tensor::TensorView::new(dtype, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    let bytes = safetensors::tensor::serialize(views, None).map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    write_atomic(path, &bytes)
}

/// Restores AdamW moments saved by [`write_checkpoint`] into `optimizer`.
pub fn read_optimizer(dir: &Path, model: &BertClassifier, optimizer: &mut AdamW, adam_step: u64) -> Result<()> {
    let path = dir.join(OPTIMIZER_FILE);
    let stored: HashMap<String, Tensor> = read_safetensors(&path, model.dtype())?.into_iter().collect();
    for (i, name) in model.params.names().iter().enumerate() {
        if let Some(m) = &mut optimizer.moments[i] {
            let (Some(first), Some(second)) = (stored.get(&format!("m.{name}")), stored.get(&format!("v.{name}"))) else {
                return Err(Error::Checkpoint { path: path.clone(), message: format!("no optimizer moments for `{name}`") });
            };
            if first.shape() != m.m.shape() || second.shape() != m.v.shape() {
                return Err(Error::Checkpoint {
                    path: path.clone(),
                    message: format!("optimizer moments for `{name}` have the wrong shape"),
                });
            }
            m.m = first.clone();
            m.v = second.clone();
        }
    }
    optimizer.step = adam_step;
    Ok(())
}

/// Whether `dir` holds a checkpoint berth can resume from.
pub fn is_checkpoint(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file() && dir.join(OPTIMIZER_FILE).is_file() && dir.join("model.safetensors").is_file()
}

/// Step checkpoints (`checkpoint-<step>`) in `output`, oldest first.
pub fn list_checkpoints(output: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(output)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse::<u64>().ok()?;
            e.path().is_dir().then_some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Files a finished model folder holds besides the weights.
pub fn model_files() -> Vec<&'static str> {
    let mut files = vec!["config.json", "model.safetensors"];
    files.extend(TOKENIZER_FILES);
    files
}
