//! The one training loop, for single-task and multi-task runs alike: each
//! optimizer step takes up to `--grad-accum` micro-batches of the epoch's
//! plan, accumulates their gradients, clips and applies AdamW (on the CPU or
//! on the device), advances the resumable state, logs, evaluates and writes
//! checkpoints. What differs between the runs (the model, the batches, the
//! evaluation, the checkpoint's files) is the [`Job`].

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::device_training::DeviceTraining;
use super::diagnostics::{BeforeUpdate, LayerGroups, StepDiagnostics};
use super::options::TrainConfig;
use super::run_files::{MetricsLog, after_failed_save, ensure_finite_weights, non_finite, prune_checkpoints};
use super::state::{TrainingState, sibling};
use crate::autograd::{Profile, accumulate};
use crate::error::{Error, Result};
use crate::model::ForwardMode;
use crate::model::params::ParamStore;
use crate::optim::clip::grad_norm_for_clip;
use crate::optim::{AdamW, Schedule};
use crate::rng::mix64;
use crate::tensor::Tensor;

/// One micro-batch of an epoch's plan: the head it trains (0 for a
/// single-task run) and its rows in that head's training data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MicroBatch {
    pub head: usize,
    pub rows: Vec<usize>,
}

/// What one micro-batch's forward and backward gave.
pub(super) struct MicroOutcome {
    /// The loss before any scaling; a non-finite loss stops the run before backward.
    pub loss: f64,
    pub real_tokens: usize,
    /// With `--profile`: the micro-batch's tape's op times.
    pub profile: Option<Profile>,
}

/// What is being trained, as the loop sees it.
pub(super) trait Job {
    /// Per-step state a job prepares once per optimizer step (the CPU's
    /// transposed weights, which stay current until the update).
    type StepCache;

    /// The parameters the optimizer updates, in store order.
    fn store(&self) -> &ParamStore;
    fn store_mut(&mut self) -> &mut ParamStore;
    /// The micro-batches of epoch `epoch`, in order.
    fn epoch_plan(&self, epoch: u64) -> Vec<MicroBatch>;
    /// The per-step cache; `on_device` says whether the device engine runs the step.
    fn step_cache(&self, on_device: bool) -> Result<Self::StepCache>;
    /// Forward and backward of one micro-batch, with gradients scaled by
    /// `grad_scale` and added into `grads` (store order). The device's
    /// working copies are `device_params` when training runs there.
    fn micro_batch(
        &self,
        batch: &MicroBatch,
        device_params: Option<&[Tensor]>,
        cache: &Self::StepCache,
        mode: ForwardMode,
        grad_scale: f64,
        grads: &mut [Option<Tensor>],
    ) -> Result<MicroOutcome>;
    /// The name a log line gives each head's loss: `loss` for a single-task
    /// run, `loss_<head>` for each head of a multi-task one.
    fn loss_key(&self, head: usize) -> String;
    /// The head's name in errors, when there are several.
    fn head_name(&self, head: usize) -> Option<&str>;
    /// The factor of the head's loss in the summed objective (`loss-weight`).
    fn loss_weight(&self, _head: usize) -> f64 {
        1.0
    }
    /// Runs the evaluation due after this step: logs it, keeps the best
    /// model. Returns true to stop early.
    fn evaluate(&mut self, ctx: &mut EvalContext) -> Result<bool>;
    /// Writes a checkpoint of the model, optimizer and state into `dir`.
    fn write_checkpoint(&self, dir: &std::path::Path, optimizer: &AdamW, state: &TrainingState) -> Result<()>;
}

/// What an evaluation after a step may use.
pub(super) struct EvalContext<'a> {
    pub state: &'a mut TrainingState,
    pub device_params: Option<&'a [Tensor]>,
    pub log: &'a mut MetricsLog,
    pub bar: &'a ProgressBar,
    pub batches_in_epoch: usize,
}

/// The state of a run the loop advances: counters, optimizer, device engine, log.
pub(super) struct Run<'a> {
    pub config: &'a TrainConfig,
    pub state: TrainingState,
    pub optimizer: AdamW,
    pub engine: Option<DeviceTraining>,
    pub schedule: Schedule,
    pub log: MetricsLog,
    /// The model's parts for `--diagnostics on`; None when off.
    pub diagnostics: Option<LayerGroups>,
    /// With `--profile`: every op's time so far, the optimizer's and the diagnostics' too.
    pub profile: Option<Profile>,
}

/// Steps until `state.total_steps`, an early stop, or an error; the host
/// parameters are up to date from the device when it returns Ok.
pub(super) fn run_steps<J: Job>(job: &mut J, run: &mut Run) -> Result<()> {
    let config = run.config;
    let total_steps = run.state.total_steps;
    let bar = progress_bar(total_steps, run.state.step);
    let run_start = Instant::now();
    let tokens_at_start = run.state.real_tokens;
    let steps_at_start = run.state.step;
    let mut stop = false;
    'epochs: while run.state.step < total_steps && !stop {
        let plan = job.epoch_plan(run.state.epoch);
        // Every pass of this loop must take at least one step: a position at
        // or past the epoch's end (a checkpoint of another run) would spin.
        if run.state.batch_in_epoch >= plan.len() {
            return Err(Error::Checkpoint {
                path: config.resume_from.clone().unwrap_or_else(|| config.output.clone()),
                message: format!(
                    "not the same run: epoch {} has {} batches here, but the checkpoint stands at batch {}; resume with the data and batch size it was started with",
                    run.state.epoch,
                    plan.len(),
                    run.state.batch_in_epoch
                ),
            });
        }
        // The plan is this epoch's only: at its end the outer loop draws the
        // next epoch's (a new order, new samples), never replaying this one.
        let plan_epoch = run.state.epoch;
        while run.state.epoch == plan_epoch {
            let next = run.state.step + 1;
            let log_now = next % config.logging_steps == 0 || next == total_steps;
            let (lr, grad_norm, step_loss, diagnostics) = optimizer_step(job, run, &plan, log_now)?;
            let state = &mut run.state;
            let elapsed = run_start.elapsed().as_secs_f64().max(1e-9);
            let tokens_per_s = (state.real_tokens - tokens_at_start) as f64 / elapsed;
            bar.set_position(state.step);
            bar.set_message(format!("loss {step_loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"));
            if log_now {
                let figures = StepFigures { lr, grad_norm, tokens_per_s, diagnostics: diagnostics.as_ref().zip(run.diagnostics.as_ref()) };
                log_step(job, state, plan.len(), &figures, &mut run.log)?;
            }
            let epoch_done = state.batch_in_epoch == 0;
            let eval_now = match config.eval_every {
                Some(n) => state.step % n == 0 || state.step == total_steps,
                None => epoch_done || state.step == total_steps,
            };
            let save_now = config.save_every.is_some_and(|n| state.step % n == 0);
            if let Some(e) = &run.engine
                && (eval_now || save_now)
            {
                e.download(job.store_mut(), Some(&mut run.optimizer))?;
            }
            if eval_now {
                let mut ctx = EvalContext {
                    state: &mut run.state,
                    device_params: run.engine.as_ref().map(|e| e.params()),
                    log: &mut run.log,
                    bar: &bar,
                    batches_in_epoch: plan.len(),
                };
                stop = job.evaluate(&mut ctx)?;
            }
            if save_now {
                let dir = config.output.join(format!("checkpoint-{}", run.state.step));
                ensure_finite_weights(job.store(), &run.state, config)?;
                if let Err(e) = job.write_checkpoint(&dir, &run.optimizer, &run.state) {
                    let _ = std::fs::remove_dir_all(sibling(&dir, "tmp"));
                    return Err(after_failed_save(config, &run.state, e));
                }
                prune_checkpoints(&config.output, config.save_limit)?;
            }
            if run.state.step >= total_steps || stop {
                break 'epochs;
            }
        }
    }
    bar.finish_and_clear();
    if let Some(e) = &run.engine {
        e.download(job.store_mut(), Some(&mut run.optimizer))?;
    }
    if let Some(p) = &run.profile {
        let steps = run.state.step.saturating_sub(steps_at_start);
        let json = match &run.engine {
            None => p.to_json("cpu", steps),
            Some(e) => {
                let device = e.device();
                let mut json = p.to_json(&device.describe(), steps);
                json["timing"] = serde_json::json!(DEVICE_OP_TIMING);
                let kernels = crate::device::kernel_profile_json(&device.take_kernel_profile()?, device.is_simulated());
                for (key, value) in kernels.as_object().expect("an object") {
                    json[key] = value.clone();
                }
                json
            }
        };
        let json = serde_json::to_string_pretty(&json).expect("a profile serialises");
        crate::io::write_atomic(&config.output.join(PROFILE_FILE), json.as_bytes())?;
    }
    Ok(())
}

/// What profile.json's op rows measure on a device.
const DEVICE_OP_TIMING: &str = "wall clock on the host, per op as the tape records it: on a device, the time to issue the op's \
     launches, which run asynchronously (their kernels' times are in `kernels`, which covers every launch of the run, \
     evaluation included)";

/// What `--profile` writes into the output folder (and the report reads).
pub const PROFILE_FILE: &str = "profile.json";

/// One optimizer step over the next group of micro-batches of `plan`:
/// returns the learning rate, the gradient norm before clipping, the step's
/// mean loss and, when the step is logged (`logged`) with diagnostics on,
/// its per-part figures; the state is advanced past the group.
fn optimizer_step<J: Job>(
    job: &mut J,
    run: &mut Run,
    plan: &[MicroBatch],
    logged: bool,
) -> Result<(f64, f64, f64, Option<StepDiagnostics>)> {
    let config = run.config;
    let state = &mut run.state;
    // Up to grad_accum micro-batches (fewer at the end of an epoch).
    let group_end = (state.batch_in_epoch + config.grad_accum).min(plan.len());
    let group = &plan[state.batch_in_epoch..group_end];
    let mut grads: Vec<Option<Tensor>> = vec![None; job.store().len()];
    let mut step_loss = 0.0;
    // Weights change only at the update, so one cache serves every micro-batch.
    let cache = job.step_cache(run.engine.is_some())?;
    for (k, batch) in group.iter().enumerate() {
        let dropout_seed = mix64(config.seed ^ mix64(state.micro_batches + k as u64 + 1));
        // Packed where the backend packs rows (the CPU); a device pads.
        let mode = ForwardMode::train(dropout_seed).last_state_only();
        let mode = if config.skip_padding { mode.skipping_padding() } else { mode };
        let device_params = run.engine.as_ref().map(|e| e.params());
        let out = job.micro_batch(batch, device_params, &cache, mode, 1.0 / group.len() as f64, &mut grads)?;
        if !out.loss.is_finite() {
            let what = match job.head_name(batch.head) {
                Some(name) => format!("loss of head `{name}`"),
                None => "loss".to_string(),
            };
            return Err(non_finite(&what, out.loss, state, config));
        }
        if let (Some(total), Some(p)) = (run.profile.as_mut(), &out.profile) {
            total.merge(p);
        }
        step_loss += out.loss / group.len() as f64;
        state.real_tokens += out.real_tokens as u64;
        if job.head_name(batch.head).is_some() {
            if state.head_windows.len() <= batch.head {
                state.head_windows.resize(batch.head + 1, (0.0, 0));
            }
            state.head_windows[batch.head].0 += out.loss;
            state.head_windows[batch.head].1 += 1;
        }
    }
    let lr = run.schedule.lr(state.step);
    let groups = run.diagnostics.as_ref().filter(|_| logged);
    let timer = Instant::now();
    // A device measures by download around its step; the CPU inside its clip and update.
    let before = groups.filter(|_| run.engine.is_some()).map(|g| {
        let params = run.engine.as_ref().map_or(job.store().tensors(), |e| e.params());
        BeforeUpdate::take(g, params, &grads)
    });
    let diagnostics_before = timer.elapsed().as_secs_f64();
    let timer = Instant::now();
    let mut cpu_diagnostics = None;
    let grad_norm = match &mut run.engine {
        Some(e) => e
            .step(&mut run.optimizer, &grads, lr, config.max_grad_norm)
            .map_err(|_| non_finite("gradient norm", f64::NAN, state, config))?,
        None => {
            // The clip factor is applied inside AdamW, not by a pass over the gradients.
            let clip =
                grad_norm_for_clip(&grads, config.max_grad_norm).map_err(|_| non_finite("gradient norm", f64::NAN, state, config))?;
            let params = job.store_mut().tensors_mut();
            let sums = run.optimizer.update_clipped(params, &grads, lr, Some(&clip.factor), groups.is_some())?;
            if let (Some(g), Some(sums)) = (groups, sums) {
                cpu_diagnostics = Some(g.from_sums(&clip.squares.unwrap_or_default(), &sums));
            }
            clip.norm
        }
    };
    let optimizer_seconds = timer.elapsed().as_secs_f64();
    let timer = Instant::now();
    let diagnostics = cpu_diagnostics
        .or_else(|| before.zip(groups).map(|(b, g)| b.finish(g, run.engine.as_ref().map_or(job.store().tensors(), |e| e.params()))));
    if let Some(p) = run.profile.as_mut() {
        p.add_step_work("clip and AdamW", optimizer_seconds);
        if diagnostics.is_some() {
            p.add_step_work("diagnostics", diagnostics_before + timer.elapsed().as_secs_f64());
        }
    }
    if config.max_grad_norm > 0.0 && grad_norm > config.max_grad_norm {
        state.log_window_clipped += 1;
    }
    state.step += 1;
    state.adam_step = run.optimizer.step;
    state.micro_batches += group.len() as u64;
    state.batch_in_epoch = group_end;
    if state.batch_in_epoch >= plan.len() {
        state.epoch += 1;
        state.batch_in_epoch = 0;
    }
    state.log_window_loss += step_loss;
    state.log_window_steps += 1;
    Ok((lr, grad_norm, step_loss, diagnostics))
}

/// Gradients `g` of a micro-batch's parameters, added into `grads` at the
/// store positions `positions` (one per tape parameter).
pub(super) fn add_gradients(
    grads: &mut [Option<Tensor>],
    positions: impl IntoIterator<Item = usize>,
    mut take: impl FnMut(usize) -> Option<Tensor>,
) -> Result<()> {
    for (k, i) in positions.into_iter().enumerate() {
        if let Some(gi) = take(k) {
            match &mut grads[i] {
                None => grads[i] = Some(gi),
                Some(acc) => accumulate(acc, &gi)?,
            }
        }
    }
    Ok(())
}

/// What a log line reports besides the losses.
struct StepFigures<'a> {
    lr: f64,
    grad_norm: f64,
    tokens_per_s: f64,
    /// With `--diagnostics on`: the step's per-part figures and the parts.
    diagnostics: Option<(&'a StepDiagnostics, &'a LayerGroups)>,
}

/// The log line of a step: one loss for a single-task run (the mean of the
/// steps' means since the last line), one per head for a multi-task run (the
/// mean of that head's micro-batches since the last line, and that times the
/// head's loss weight: its scale in the summed objective).
fn log_step<J: Job>(
    job: &J,
    state: &mut TrainingState,
    batches_in_epoch: usize,
    figures: &StepFigures,
    log: &mut MetricsLog,
) -> Result<()> {
    let mut entry = json!({"step": state.step, "epoch": epoch_float(state, batches_in_epoch)});
    if job.head_name(0).is_none() {
        entry["loss"] = json!(state.log_window_loss / state.log_window_steps.max(1) as f64);
    } else {
        for (h, (sum, n)) in state.head_windows.iter().enumerate() {
            if *n > 0 {
                let mean = *sum / *n as f64;
                entry[job.loss_key(h)] = json!(mean);
                if figures.diagnostics.is_some() {
                    entry[format!("weighted_{}", job.loss_key(h))] = json!(mean * job.loss_weight(h));
                }
            }
        }
    }
    entry["learning_rate"] = json!(figures.lr);
    entry["grad_norm"] = json!(figures.grad_norm);
    entry["tokens_per_s"] = json!(figures.tokens_per_s);
    if let Some((diagnostics, groups)) = figures.diagnostics {
        diagnostics.write_into(groups, &mut entry);
        entry["clipped_fraction"] = json!(state.log_window_clipped as f64 / state.log_window_steps.max(1) as f64);
    }
    log.write(entry)?;
    state.log_window_loss = 0.0;
    state.log_window_steps = 0;
    state.log_window_clipped = 0;
    state.head_windows.iter_mut().for_each(|w| *w = (0.0, 0));
    Ok(())
}

pub(super) fn epoch_float(state: &TrainingState, batches_per_epoch: usize) -> f64 {
    state.epoch as f64 + state.batch_in_epoch as f64 / batches_per_epoch.max(1) as f64
}

/// A line for the user above the progress bar, or on stderr when the bar is
/// hidden (stderr is not a terminal), where `println` would drop it.
pub(super) fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
}

fn progress_bar(total: u64, position: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(position);
    bar
}
