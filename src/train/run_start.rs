//! Starting a run, single-task or multi-task alike: the step plan (total
//! and warmup steps, the schedule), AdamW, the resumable state (new, or read
//! back from `--resume-from` and checked to be the same run), the metrics
//! log, and the device engine.

use super::device_training::DeviceTraining;
use super::diagnostics::LayerGroups;
use super::options::TrainConfig;
use super::run_files::{MetricsLog, truncate_log};
use super::state::{RunIdentity, TrainingState, read_optimizer};
use crate::autograd::Profile;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::device_model::Precision;
use crate::model::params::ParamStore;
use crate::optim::{AdamW, AdamWConfig, Schedule};

use super::step_loop::Run;

/// How many optimizer steps a run takes, and its learning-rate schedule.
pub(super) struct StepPlan {
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub schedule: Schedule,
}

impl StepPlan {
    /// The plan of a run whose epoch holds `batches_per_epoch` micro-batches.
    pub fn new(config: &TrainConfig, batches_per_epoch: u64) -> StepPlan {
        let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accum as u64).max(1);
        let total_steps = config.max_steps.unwrap_or_else(|| (config.epochs * steps_per_epoch as f64).ceil() as u64).max(1);
        let warmup_steps = config.warmup_steps.unwrap_or_else(|| (config.warmup_ratio * total_steps as f64).ceil() as u64);
        let schedule = Schedule { kind: config.schedule, peak_lr: config.lr, warmup_steps, total_steps };
        StepPlan { steps_per_epoch, total_steps, warmup_steps, schedule }
    }
}

/// AdamW over `store`, the state (fresh, or the checkpoint's when resuming,
/// whose moments are read back), the log, and on a device the engine.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_run<'a>(
    config: &'a TrainConfig,
    store: &ParamStore,
    trainable: &[bool],
    plan: &StepPlan,
    labels: Vec<String>,
    identity: RunIdentity,
    resume: Option<&(std::path::PathBuf, TrainingState)>,
    (device, precision): (&Option<Device>, Precision),
) -> Result<Run<'a>> {
    let adam = AdamWConfig { weight_decay: config.weight_decay, ..AdamWConfig::default() };
    let mut optimizer = AdamW::new(adam, store.names(), store.tensors(), trainable);
    let mut state = TrainingState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        micro_batches: 0,
        total_steps: plan.total_steps,
        warmup_steps: plan.warmup_steps,
        adam_step: 0,
        best_metric: None,
        best_step: None,
        evals_without_improvement: 0,
        real_tokens: 0,
        log_window_loss: 0.0,
        log_window_steps: 0,
        log_window_clipped: 0,
        head_windows: Vec::new(),
        labels,
        config: config.clone(),
        identity: Some(identity.clone()),
    };
    if let Some((dir, saved)) = resume {
        read_optimizer(dir, store, &mut optimizer, saved.adam_step)?;
        state = TrainingState { config: config.clone(), identity: Some(identity), ..saved.clone() };
        if state.total_steps != plan.total_steps {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                message: format!(
                    "the checkpoint's run had {} steps in all; this one would have {}: use the same data and settings",
                    state.total_steps, plan.total_steps
                ),
            });
        }
        truncate_log(&config.output.join("metrics.jsonl"), state.step)?;
        eprintln!("resuming from {} at step {} (epoch {}, batch {})", dir.display(), state.step, state.epoch, state.batch_in_epoch);
    } else {
        // A new run into a used folder starts its own log; appending would mix two runs' steps.
        write_atomic(&config.output.join("metrics.jsonl"), b"")?;
    }
    // On a device, the weights and moments live there; the host copies are
    // refreshed before evaluation, checkpoints and the final save.
    // On a device, --profile also times every kernel (events, or the simulator's clock).
    if let (true, Some(d)) = (config.profile, device) {
        d.start_kernel_profile()?;
    }
    let engine = match device {
        Some(d) => {
            eprintln!("device: {} ({:?})", d.describe(), precision);
            Some(DeviceTraining::upload(d, precision, store, &optimizer)?)
        }
        None => {
            match precision {
                // The encoder's products on the CPU's BF16 kernel, f32 master weights and moments.
                Precision::Bf16 => eprintln!("device: cpu ({}; master weights f32)", crate::backend::cpu::bf16_linear::describe()),
                _ => eprintln!("device: cpu"),
            }
            None
        }
    };
    let log = MetricsLog::open(&config.output.join("metrics.jsonl"))?;
    let diagnostics = config.diagnostics.then(|| LayerGroups::of(store));
    let profile = config.profile.then(Profile::default);
    Ok(Run { config, state, optimizer, engine, schedule: plan.schedule, log, diagnostics, profile })
}
