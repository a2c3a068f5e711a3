//! The run folder's files while a run trains: checkpoints kept and pruned,
//! model folders saved atomically, `metrics.jsonl` appended and cut back,
//! the errors that say what is kept after a failure, and the final report.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::dataset::EncodedDataset;
use super::imbalance::ImbalanceSetup;
use super::options::TrainConfig;
use super::state::{TrainingState, list_checkpoints, replace_dir, sibling};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::evaluation::Evaluation;
use crate::model::checkpoint::{TokenizerFiles, count_non_finite};
use crate::model::params::ParamStore;
use crate::model::settings::InferenceSettings;
use crate::model::{BertClassifier, save_model};
use crate::tensor::DType;

/// report.md and plots/ in the output folder.
pub(super) fn write_run_report(
    config: &TrainConfig,
    labels: &[String],
    imbalance: &ImbalanceSetup,
    augmentation: &[String],
    e: &Evaluation,
    data: &EncodedDataset,
) -> Result<()> {
    let log_path = config.output.join("metrics.jsonl");
    let log: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .map_err(|err| Error::io(&log_path, err))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let metric = if config.metric_for_best == "loss" { config.task.default_metric().to_string() } else { config.metric_for_best.clone() };
    let mut setup = vec![
        format!("task: {}, trained on `{}`", config.task.name(), config.train.display()),
        format!("loss: {}", imbalance.loss.describe()),
    ];
    if let (Some(spec), Some(w)) = (&config.class_weights, &imbalance.loss.class_weights) {
        setup.push(format!("class weights ({}): {}", spec.text(), super::class_weights::describe(labels, w)));
    }
    if config.sampler != crate::data::sampler::SamplerKind::Random || config.epoch_length.is_some() {
        setup.push(imbalance.sampler.describe(labels));
    }
    setup.extend(augmentation.iter().cloned());
    let multi_gold = match data.gold_targets() {
        super::dataset::Targets::Multi(g) => Some(g.as_slice()),
        _ => None,
    };
    let input = crate::report::ReportInput {
        title: config.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        labels,
        train_counts: &imbalance.counts,
        evaluation: e,
        multi_gold,
        eval_file: data.path.display().to_string(),
        log,
        metric,
        setup,
        // The profile this run wrote (`--profile`).
        profile: config
            .profile
            .then(|| std::fs::read_to_string(config.output.join(super::step_loop::PROFILE_FILE)).ok())
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok()),
    };
    let files = crate::report::write_report(&config.output, &input)?;
    eprintln!("report: {}", files.iter().map(|f| config.output.join(f).display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(())
}

/// After a save failed (a full disk, say): the folder keeps its last
/// complete checkpoint and `best/`; `metrics.jsonl` is cut back to the
/// newest of them, so it describes a model that is on disk, and the error
/// says what is kept.
pub(super) fn after_failed_save(config: &TrainConfig, state: &TrainingState, error: Error) -> Error {
    let last_checkpoint = list_checkpoints(&config.output).last().map(|(s, _)| *s);
    let best = state.best_step.filter(|_| config.output.join("best").join("model.safetensors").is_file());
    let kept_step = last_checkpoint.into_iter().chain(best).max().unwrap_or(0);
    let log_note = match truncate_log(&config.output.join("metrics.jsonl"), kept_step) {
        Ok(()) => format!("metrics.jsonl now ends at step {kept_step}"),
        Err(e) => format!("metrics.jsonl could not be cut back to step {kept_step} either ({e})"),
    };
    let best_note = best.map(|s| format!("; best/ (step {s}) is intact")).unwrap_or_default();
    Error::Save(format!("at step {}: {error}; {}{best_note}; {log_note}", state.step, last_checkpoint_note(config)))
}

/// Where a failed run can restart from, for its error message.
pub(super) fn last_checkpoint_note(config: &TrainConfig) -> String {
    list_checkpoints(&config.output)
        .last()
        .map(|(s, p)| format!("the last checkpoint (step {s}, {}) is intact", p.display()))
        .unwrap_or_else(|| "no checkpoint was written yet".into())
}

pub(super) fn non_finite(what: &str, value: f64, state: &TrainingState, config: &TrainConfig) -> Error {
    // Before the first update the weights are the checkpoint's own, so the
    // learning rate cannot be the cause.
    let advice = if state.adam_step == 0 {
        "No update has been made yet, so the learning rate is not the cause: check the model's weights and the data (labels, targets, very long inputs)"
    } else {
        "A smaller --lr (or warmup, or --max-grad-norm) usually helps"
    };
    Error::Numerical(format!(
        "the {what} is {value} at step {} (epoch {}, batch {}); training stopped without saving a model; {}. {advice}",
        state.step + 1,
        state.epoch,
        state.batch_in_epoch,
        last_checkpoint_note(config)
    ))
}

/// Refuses to save weights that are no longer finite (an update can overflow
/// before any loss turns NaN); the previous checkpoint stays the last good one.
pub(super) fn ensure_finite_weights(store: &ParamStore, state: &TrainingState, config: &TrainConfig) -> Result<()> {
    if let Some((name, _)) = store.iter().find(|(_, t)| count_non_finite(t) > 0) {
        return Err(Error::Numerical(format!(
            "parameter `{name}` is no longer finite after step {}; training stopped without saving it; {}. A smaller --lr usually helps",
            state.step,
            last_checkpoint_note(config)
        )));
    }
    Ok(())
}

/// Saves a model folder atomically (temporary folder, then rename).
pub(super) fn save_model_dir(model: &BertClassifier, dir: &Path, tokenizer: &TokenizerFiles, settings: &InferenceSettings) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    save_model(model, &tmp, DType::F32)?;
    tokenizer.write(&tmp)?;
    settings.write(&tmp)?;
    replace_dir(&tmp, dir)
}

pub(super) fn prune_checkpoints(output: &Path, keep: usize) -> Result<()> {
    let all = list_checkpoints(output);
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, dir) in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// `metrics.jsonl`: one JSON object per logging step and per evaluation, appended and flushed.
pub(super) struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    pub(super) fn open(path: &Path) -> Result<MetricsLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog { file, path: path.into() })
    }

    pub(super) fn write(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}").and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// On resume, drops log lines from after the checkpoint, which the resumed run will write again.
pub(super) fn truncate_log(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, kept.as_bytes())
}
