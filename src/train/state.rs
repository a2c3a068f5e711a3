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
use crate::model::params::ParamStore;
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
    /// Of those steps, the ones whose gradient norm was clipped.
    #[serde(default)]
    pub log_window_clipped: u64,
    /// A multi-task run's loss sum and micro-batch count per head since the
    /// last log line (empty for a single-task run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head_windows: Vec<(f64, u64)>,
    pub labels: Vec<String>,
    pub config: TrainConfig,
    /// What the run started from, to tell a resumed run from another one.
    /// Absent in the states of runs from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<RunIdentity>,
}

/// The model folder and the training data a run started from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunIdentity {
    /// The `--model` folder, absolute.
    pub model: PathBuf,
    pub train_file: FileIdentity,
    /// Each `--augment` file's name, size and SHA-256, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub augment: Vec<super::augment::AugmentRecord>,
}

/// A file's size and a 64-bit content hash (hex): enough to tell that a
/// training file changed between a run and its resumption.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileIdentity {
    pub size: u64,
    pub hash: String,
}

impl FileIdentity {
    pub fn of(path: &Path) -> Result<FileIdentity> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut h = crate::rng::mix64(bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            h = crate::rng::mix64(h ^ u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        h = crate::rng::mix64(h ^ u64::from_le_bytes(last));
        Ok(FileIdentity { size: bytes.len() as u64, hash: format!("{h:016x}") })
    }
}

impl RunIdentity {
    pub fn of(config: &TrainConfig) -> Result<RunIdentity> {
        let mut identity = RunIdentity::with_files(config, &[config.train.as_path()])?;
        identity.augment = config.augment.iter().map(|f| super::augment::AugmentRecord::of(f)).collect::<Result<_>>()?;
        Ok(identity)
    }

    /// The model folder and the contents of `files`, in order, as one
    /// identity (a multi-task run: the heads file and each head's data).
    pub fn with_files(config: &TrainConfig, files: &[&Path]) -> Result<RunIdentity> {
        let model = std::path::absolute(&config.model).map_err(|e| Error::io(&config.model, e))?;
        let model = model.canonicalize().unwrap_or(model);
        let mut identities = files.iter().map(|f| FileIdentity::of(f)).collect::<Result<Vec<_>>>()?;
        let train_file = if identities.len() == 1 {
            identities.remove(0)
        } else {
            let size = identities.iter().map(|f| f.size).sum();
            let hash = identities.iter().fold(crate::rng::mix64(identities.len() as u64), |h, f| {
                crate::rng::mix64(h ^ u64::from_str_radix(&f.hash, 16).unwrap_or_default())
            });
            FileIdentity { size, hash: format!("{hash:016x}") }
        };
        Ok(RunIdentity { model, train_file, augment: Vec::new() })
    }
}

/// A resumed run must be the run its checkpoint came from: every setting
/// that decides the data, its order, the model or the optimisation must be
/// the same. Returns an error listing each difference (old and new value).
pub fn check_same_run(dir: &Path, saved: &TrainingState, config: &TrainConfig, identity: &RunIdentity) -> Result<()> {
    let old = &saved.config;
    let mut differences: Vec<(&str, String, String)> = Vec::new();
    let mut compare = |flag: &'static str, a: String, b: String| {
        if a != b {
            differences.push((flag, a, b));
        }
    };
    if let Some(was) = &saved.identity {
        compare("--model", was.model.display().to_string(), identity.model.display().to_string());
        let file = |f: &FileIdentity| format!("{} bytes, hash {}", f.size, f.hash);
        let what =
            if config.heads.is_some() { "--heads (its file's and its heads' data contents)" } else { "--train (the file's contents)" };
        compare(what, file(&was.train_file), file(&identity.train_file));
        let augment = |records: &[super::augment::AugmentRecord]| {
            let listed: Vec<String> =
                records.iter().map(|r| format!("{} ({} bytes, sha256 {})", r.file.display(), r.size, r.sha256)).collect();
            if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
        };
        compare("--augment (the files' contents)", augment(&was.augment), augment(&identity.augment));
    }
    compare("--task", old.task.name().into(), config.task.name().into());
    // The rest by the text they are saved as (typed options as a user
    // writes them): equal values save alike, so comparing text is comparing values.
    let (old_saved, new_saved) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(config).unwrap_or_default());
    let shown = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".into(),
        other => other.to_string(),
    };
    macro_rules! same {
        ($($flag:literal => $field:ident),* $(,)?) => {
            $(compare($flag, shown(&old_saved[stringify!($field)]), shown(&new_saved[stringify!($field)]));)*
        };
    }
    same!(
        "--batch-size" => batch_size, "--grad-accum" => grad_accum, "--max-length" => max_length, "--seed" => seed,
        "--sampler" => sampler, "--epoch-length" => epoch_length, "--length-bucketing" => length_bucketing,
        "--format" => format, "--text-column" => text_column, "--text-pair-column" => text_pair_column,
        "--label-column" => label_column, "--label-separator" => label_separator, "--tag-column" => tag_column,
        "--alignment" => alignment, "--header" => header, "--freeze" => freeze, "--lr" => lr,
        "--weight-decay" => weight_decay, "--schedule" => schedule, "--max-grad-norm" => max_grad_norm,
        "--loss" => loss, "--focal-gamma" => focal_gamma, "--focal-alpha" => focal_alpha,
        "--class-weights" => class_weights,
    );
    // A multi-task checkpoint resumes only as a multi-task run, and the
    // other way round (the heads file's contents are in the identity).
    compare(
        "--heads",
        if old.heads.is_some() { "given" } else { "not given" }.into(),
        if config.heads.is_some() { "given" } else { "not given" }.into(),
    );
    if differences.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = differences.iter().map(|(flag, a, b)| format!("\n  {flag}: {a} in the checkpoint's run, {b} now")).collect();
    Err(Error::Checkpoint {
        path: dir.into(),
        message: format!(
            "not the same run, so it cannot be resumed:{}\nResume with the settings and data it was started with, or start a new run (--overwrite reuses the folder)",
            lines.concat()
        ),
    })
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
    write_checkpoint_with(dir, &model.params, optimizer, state, |tmp| {
        save_model(model, tmp, DType::F32)?;
        tokenizer.write(tmp)
    })
}

/// As [`write_checkpoint`], for any model: `save` writes the model's own
/// files (weights, config, tokenizer) into the temporary folder it is given;
/// `store` holds the parameters the optimizer's moments belong to.
pub fn write_checkpoint_with(
    dir: &Path,
    store: &ParamStore,
    optimizer: &AdamW,
    state: &TrainingState,
    save: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    save(&tmp)?;
    write_state(&tmp, state)?;
    write_optimizer(&tmp.join(OPTIMIZER_FILE), store, optimizer)?;
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

fn write_optimizer(path: &Path, store: &ParamStore, optimizer: &AdamW) -> Result<()> {
    let mut named: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (i, name) in store.names().iter().enumerate() {
        if let Some(m) = &optimizer.moments[i] {
            named.push((format!("m.{name}"), m.m.to_le_bytes(), m.m.shape().to_vec()));
            named.push((format!("v.{name}"), m.v.to_le_bytes(), m.v.shape().to_vec()));
        }
    }
    let dtype = match store.tensors().first().map(Tensor::dtype) {
        Some(DType::F64) => safetensors::Dtype::F64,
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
pub fn read_optimizer(dir: &Path, store: &ParamStore, optimizer: &mut AdamW, adam_step: u64) -> Result<()> {
    let path = dir.join(OPTIMIZER_FILE);
    let dtype = store.tensors().first().map_or(DType::F32, Tensor::dtype);
    let stored: HashMap<String, Tensor> = read_safetensors(&path, dtype)?.into_iter().collect();
    for (i, name) in store.names().iter().enumerate() {
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
