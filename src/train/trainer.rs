//! The training loop: batches → forward (dropout on) → loss → backward →
//! gradient accumulation → clipping → AdamW with the schedule; logging,
//! evaluation, best-model selection, early stopping and checkpoints around it.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::dataset::{DataSpec, EncodedDataset, sampled_batches};
use super::evaluate::{Redecide, evaluate, evaluate_with};
use super::freeze::FreezeSpec;
use super::imbalance::ImbalanceSetup;
use super::options::TrainConfig;
use super::output_dir::prepare_output;
use super::run_files::{
    MetricsLog, after_failed_save, ensure_finite_weights, non_finite, prune_checkpoints, save_model_dir, truncate_log, write_run_report,
};
use super::state::{
    RunIdentity, STATE_FILE, TrainingState, check_same_run, is_checkpoint, model_files, read_optimizer, read_state, sibling,
    write_checkpoint, write_state,
};
use crate::autograd::{Tape, accumulate};
use crate::backend::open_device;
use crate::data::BerthTokenizer;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::calibration::fit_temperature;
use crate::metrics::evaluation::Evaluation;
use crate::model::checkpoint::TokenizerFiles;
use crate::model::params::ParamStore;
use crate::model::settings::{DataSettings, InferenceSettings, SETTINGS_FILE};
use crate::model::task::Task;
use crate::model::{BertClassifier, ForwardMode, LoadOptions, load_model, save_model};
use crate::optim::{AdamW, AdamWConfig, Schedule, clip_grad_norm};
use crate::rng::mix64;
use crate::tensor::{DType, Tensor};
use crate::train::device_training::DeviceTraining;

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainSummary {
    pub steps: u64,
    pub seconds: f64,
    pub real_tokens: u64,
    pub final_eval: Option<Evaluation>,
    pub best_step: Option<u64>,
    pub output: PathBuf,
}

/// Runs a whole fine-tuning job as `config` describes.
pub fn train(config: &TrainConfig) -> Result<TrainSummary> {
    if let Some(dir) = &config.resume_from {
        if !dir.exists() {
            return Err(Error::InvalidArgument(format!("--resume-from {}: no such folder", dir.display())));
        }
        if !is_checkpoint(dir) {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                message: "not a berth checkpoint (training_state.json, optimizer.safetensors and model.safetensors are needed)".into(),
            });
        }
    }
    // Held until the run returns: a second run into the folder stops at once.
    let lock = prepare_output(config)?;
    let result = match &config.heads {
        Some(heads) => super::multitask::train_multitask(config, heads),
        None => train_single(config),
    };
    if result.is_err() {
        lock.remove_if_unused();
    }
    result
}

/// One head: the whole run, with the output folder already locked.
fn train_single(config: &TrainConfig) -> Result<TrainSummary> {
    let (device, precision) = open_device(config.device, config.precision)?;
    let start = Instant::now();
    let spec = DataSpec::from_config(config)?;
    let train_raw = spec.read(&config.train)?;
    let labels = spec.label_set(&train_raw, config.labels.as_deref(), &config.train)?;
    let eval_raw = match &config.eval {
        Some(path) => Some((path.clone(), spec.read(path)?)),
        None => None,
    };

    // Resume: the checkpoint's model and state replace the pre-trained start.
    let identity = RunIdentity::of(config)?;
    let resume = match &config.resume_from {
        Some(dir) => Some((dir.clone(), read_state(dir)?)),
        None => None,
    };
    let model_dir = resume.as_ref().map(|(d, _)| d.clone()).unwrap_or_else(|| config.model.clone());
    let names: Vec<String> = labels.names().to_vec();
    if let Some((dir, state)) = &resume {
        check_same_run(dir, state, config, &identity)?;
        if state.labels != names {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                message: format!("the checkpoint was trained for labels {:?}, this run has {:?}", state.labels, names),
            });
        }
    }
    let load = LoadOptions {
        head: Some(config.task.head()),
        labels: Some(names.clone()),
        problem_type: config.task.problem_type(),
        seed: config.seed,
        dtype: DType::F32,
        require_trained_head: false,
    };
    let (mut model, report) = load_model(&model_dir, &load)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let tokenizer_files = TokenizerFiles::read(&model_dir)?;
    let max_length = effective_max_length(config.max_length, model.config.max_position_embeddings);
    let tokenizer = BerthTokenizer::from_dir(&model_dir, max_length)?;
    let train_data = spec.encode(&config.train, &train_raw, &labels, &tokenizer)?;
    let eval_data = match &eval_raw {
        Some((path, raw)) => Some(spec.encode(path, raw, &labels, &tokenizer)?),
        None => None,
    };
    if config.head_bias_init == super::option_text::HeadBiasInit::Prior && resume.is_none() {
        set_prior_bias(&mut model, &report.initialized, &train_data)?;
    }
    if let Some(spec) = &config.freeze {
        model.trainable = FreezeSpec::parse(spec)?.trainable(model.params.names(), model.config.num_hidden_layers)?;
    }
    let settings = InferenceSettings {
        task: Some(config.task),
        alignment: (config.task == Task::TokenClassification).then(|| config.alignment.name().to_string()),
        data: Some(DataSettings {
            format: config.format.clone(),
            text_column: config.text_column.clone(),
            text_pair_column: config.text_pair_column.clone(),
            label_column: config.label_column.clone(),
            header: config.header,
            quoting: config.quoting,
            label_separator: config.label_separator.clone(),
            tag_column: config.tag_column,
            max_length,
        }),
        ..InferenceSettings::default()
    };
    let imbalance = ImbalanceSetup::new(config, &train_data, &names)?;
    let lengths: Vec<usize> = train_data.encodings.iter().map(|e| e.ids.len()).collect();
    let batches_per_epoch = imbalance.sampler.epoch_length().div_ceil(config.batch_size) as u64;
    let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accum as u64).max(1);
    let total_steps = config.max_steps.unwrap_or_else(|| (config.epochs * steps_per_epoch as f64).ceil() as u64).max(1);
    let warmup_steps = config.warmup_steps.unwrap_or_else(|| (config.warmup_ratio * total_steps as f64).ceil() as u64);
    let schedule = Schedule { kind: config.schedule, peak_lr: config.lr, warmup_steps, total_steps };

    let adam = AdamWConfig { weight_decay: config.weight_decay, ..AdamWConfig::default() };
    let mut optimizer = AdamW::new(adam, model.params.names(), model.params.tensors(), &model.trainable);
    let mut state = TrainingState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        micro_batches: 0,
        total_steps,
        warmup_steps,
        adam_step: 0,
        best_metric: None,
        best_step: None,
        evals_without_improvement: 0,
        real_tokens: 0,
        log_window_loss: 0.0,
        log_window_steps: 0,
        labels: names.clone(),
        config: config.clone(),
        identity: Some(identity.clone()),
    };
    if let Some((dir, saved)) = &resume {
        read_optimizer(dir, &model, &mut optimizer, saved.adam_step)?;
        state = TrainingState { config: config.clone(), identity: Some(identity.clone()), ..saved.clone() };
        if state.total_steps != total_steps {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                message: format!(
                    "the checkpoint's run had {} steps in all; this one would have {total_steps}: use the same data and settings",
                    state.total_steps
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
    let mut engine = match &device {
        Some(d) => {
            eprintln!("device: {} ({:?})", d.describe(), precision);
            Some(DeviceTraining::upload(d, precision, &model.params, &optimizer)?)
        }
        None => {
            eprintln!("device: cpu");
            None
        }
    };
    let shown = TrainConfig { max_length, ..config.clone() };
    eprintln!("configuration:\n{}", serde_json::to_string_pretty(&shown).expect("serialisable"));
    eprintln!(
        "data ({}): {} training rows ({} real tokens), {} evaluation rows, {} labels: {}",
        config.task.name(),
        train_data.len(),
        train_data.real_tokens(),
        eval_data.as_ref().map_or(0, EncodedDataset::len),
        names.len(),
        names.join(", ")
    );
    eprintln!(
        "plan: {total_steps} optimizer steps ({steps_per_epoch} per epoch, {} examples per step), warmup {warmup_steps}, {} of {} parameters trained",
        config.batch_size * config.grad_accum,
        model.trained_parameter_count(),
        model.params.count()
    );

    let mut best_params: Option<ParamStore> = None;
    if state.best_step.is_some() {
        let best_dir = config.output.join("best");
        if best_dir.join("model.safetensors").is_file() {
            best_params = Some(load_model(&best_dir, &load)?.0.params);
        }
    }
    let mut log = MetricsLog::open(&config.output.join("metrics.jsonl"))?;
    let bar = progress_bar(total_steps, state.step);
    let run_start = Instant::now();
    let tokens_at_start = state.real_tokens;
    let pad_id = tokenizer.pad_id();
    let mut stop = false;
    let mut last_eval: Option<Evaluation> = None;

    'epochs: while state.step < total_steps && !stop {
        let batches = sampled_batches(&imbalance.sampler, &lengths, config.batch_size, config.seed, state.epoch, config.length_bucketing);
        // Every pass of this loop must take at least one step: a position at
        // or past the epoch's end (a checkpoint of another run) would spin.
        if state.batch_in_epoch >= batches.len() {
            return Err(Error::Checkpoint {
                path: config.resume_from.clone().unwrap_or_else(|| config.output.clone()),
                message: format!(
                    "not the same run: epoch {} has {} batches here, but the checkpoint stands at batch {}; resume with the data and batch size it was started with",
                    state.epoch,
                    batches.len(),
                    state.batch_in_epoch
                ),
            });
        }
        while state.batch_in_epoch < batches.len() {
            // One optimizer step: up to grad_accum micro-batches (fewer at the end of an epoch).
            let group_end = (state.batch_in_epoch + config.grad_accum).min(batches.len());
            let group = &batches[state.batch_in_epoch..group_end];
            let mut grads: Vec<Option<Tensor>> = vec![None; model.params.len()];
            let mut step_loss = 0.0;
            // Weights change only at the update, so one transposed copy serves
            // every micro-batch (the CPU's GEMMs want it; a device does not).
            let cache = if engine.is_none() { Some(model.weight_cache()?) } else { None };
            for (k, indices) in group.iter().enumerate() {
                let (batch, targets) = train_data.batch(indices, pad_id);
                let dropout_seed = mix64(config.seed ^ mix64(state.micro_batches + k as u64 + 1));
                let mut tape = Tape::new();
                let mode = ForwardMode::train(dropout_seed);
                let out = match &engine {
                    Some(e) => model.forward_on(&mut tape, e.params(), &batch, mode)?,
                    None => model.forward_cached(&mut tape, &batch, mode, cache.as_ref())?,
                };
                let loss = model.loss_with(&mut tape, out.logits, &targets, &imbalance.loss)?;
                let loss_value = tape.value(loss).to_f64_vec()[0];
                if !loss_value.is_finite() {
                    return Err(non_finite("loss", loss_value, &state, config));
                }
                step_loss += loss_value / group.len() as f64;
                let seed = Tensor::full(&[1], 1.0 / group.len() as f64, model.dtype());
                let mut g = tape.backward_with(loss, seed)?;
                for (i, v) in out.params.iter().enumerate() {
                    if let Some(gi) = g.take(*v) {
                        match &mut grads[i] {
                            None => grads[i] = Some(gi),
                            Some(acc) => accumulate(acc, &gi)?,
                        }
                    }
                }
                state.real_tokens += batch.real_tokens() as u64;
            }
            let lr = schedule.lr(state.step);
            let grad_norm = match &mut engine {
                Some(e) => e
                    .step(&mut optimizer, &grads, lr, config.max_grad_norm)
                    .map_err(|_| non_finite("gradient norm", f64::NAN, &state, config))?,
                None => {
                    let norm = clip_grad_norm(&mut grads, config.max_grad_norm)
                        .map_err(|_| non_finite("gradient norm", f64::NAN, &state, config))?;
                    optimizer.update(model.params.tensors_mut(), &grads, lr)?;
                    norm
                }
            };
            state.step += 1;
            state.adam_step = optimizer.step;
            state.micro_batches += group.len() as u64;
            state.batch_in_epoch = group_end;
            if state.batch_in_epoch >= batches.len() {
                state.epoch += 1;
                state.batch_in_epoch = 0;
            }
            state.log_window_loss += step_loss;
            state.log_window_steps += 1;

            let elapsed = run_start.elapsed().as_secs_f64().max(1e-9);
            let tokens_per_s = (state.real_tokens - tokens_at_start) as f64 / elapsed;
            bar.set_position(state.step);
            bar.set_message(format!("loss {step_loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"));
            if state.step % config.logging_steps == 0 || state.step == total_steps {
                log.write(json!({"step": state.step, "epoch": epoch_float(&state, batches.len()), "loss": state.log_window_loss / state.log_window_steps.max(1) as f64,
                    "learning_rate": lr, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s}))?;
                state.log_window_loss = 0.0;
                state.log_window_steps = 0;
            }
            let epoch_done = state.batch_in_epoch == 0;
            let eval_now = match config.eval_every {
                Some(n) => state.step % n == 0 || state.step == total_steps,
                None => epoch_done || state.step == total_steps,
            };
            let save_now = config.save_every.is_some_and(|n| state.step % n == 0);
            if let Some(e) = &engine
                && (eval_now || save_now)
            {
                e.download(&mut model.params, Some(&mut optimizer))?;
            }
            if let (true, Some(data)) = (eval_now, &eval_data) {
                let on_device = engine.as_ref().map(|e| e.params());
                let mut evaluation = evaluate_with(&model, on_device, data, config.batch_size.max(32), pad_id, None)?;
                if config.tune_thresholds {
                    // Select the best model by what predict will do: tuned thresholds.
                    evaluation = evaluation.with_tuned_thresholds(&model.labels)?;
                }
                if config.tune_threshold
                    && let Some((t, _)) = evaluation.best_binary_threshold()
                {
                    evaluation = evaluation.with_decision(&model.labels, Some(t), 1.0)?;
                }
                let value = evaluation.metric(&config.metric_for_best);
                let mut entry = json!({"step": state.step, "epoch": epoch_float(&state, batches.len())});
                for (key, v) in evaluation.log_fields() {
                    entry[key] = json!(v);
                }
                log.write(entry)?;
                let fields: Vec<String> =
                    evaluation.log_fields().iter().map(|(k, v)| format!("{} {v:.4}", k.trim_start_matches("eval_"))).collect();
                say(&bar, format!("step {}: eval {} = {value:.4} ({})", state.step, config.metric_for_best, fields.join(", ")));
                let improved = state.best_metric.is_none_or(|best| if config.greater_is_better { value > best } else { value < best });
                if improved {
                    state.best_metric = Some(value);
                    state.best_step = Some(state.step);
                    state.evals_without_improvement = 0;
                    best_params = Some(model.params.clone());
                    let best_settings = InferenceSettings {
                        thresholds: evaluation.thresholds().map(<[f64]>::to_vec),
                        threshold: evaluation.threshold,
                        ..settings.clone()
                    };
                    let best_dir = config.output.join("best");
                    if let Err(e) = save_model_dir(&model, &best_dir, &tokenizer_files, &best_settings) {
                        let _ = std::fs::remove_dir_all(sibling(&best_dir, "tmp"));
                        // The best step is the one whose save failed: it is not kept.
                        state.best_step = None;
                        return Err(after_failed_save(config, &state, e));
                    }
                } else {
                    state.evals_without_improvement += 1;
                    if config.early_stopping_patience.is_some_and(|p| state.evals_without_improvement >= p) {
                        say(&bar, format!("early stopping: no improvement in {} evaluations", state.evals_without_improvement));
                        stop = true;
                    }
                }
                last_eval = Some(evaluation);
            }
            if save_now {
                let dir = config.output.join(format!("checkpoint-{}", state.step));
                ensure_finite_weights(&model, &state, config)?;
                if let Err(e) = write_checkpoint(&dir, &model, &optimizer, &state, &tokenizer_files) {
                    let _ = std::fs::remove_dir_all(sibling(&dir, "tmp"));
                    return Err(after_failed_save(config, &state, e));
                }
                prune_checkpoints(&config.output, config.save_limit)?;
            }
            if state.step >= total_steps || stop {
                break 'epochs;
            }
        }
    }
    bar.finish_and_clear();
    if let Some(e) = &engine {
        e.download(&mut model.params, Some(&mut optimizer))?;
    }

    // The best model (when there was evaluation) becomes the output.
    let mut final_eval = last_eval;
    if let Some(best) = best_params {
        if state.best_step != Some(state.step) {
            model.params = best;
            eprintln!("restored the best model, from step {}", state.best_step.unwrap_or(0));
            if let Some(data) = &eval_data {
                final_eval = Some(evaluate(&model, data, config.batch_size.max(32), pad_id)?);
            }
        }
    }
    let mut settings = settings;
    if config.tune_thresholds
        && let (Some(data), Some(e)) = (&eval_data, &final_eval)
    {
        let untuned = e.with_thresholds(&model.labels, vec![0.5; model.num_labels()])?;
        let tuned = e.with_tuned_thresholds(&model.labels)?;
        eprintln!(
            "thresholds tuned on {}: macro F1 {:.4} at 0.5, {:.4} tuned",
            data.path.display(),
            untuned.metric("macro_f1"),
            tuned.metric("macro_f1")
        );
        settings.thresholds = tuned.thresholds().map(<[f64]>::to_vec);
        final_eval = Some(tuned);
    }
    let mut argmax_eval = None;
    // Single-label: temperature first, then the binary threshold on the
    // calibrated probabilities, which is the order predict applies them in.
    if let (Some(data), Some(e)) = (&eval_data, &final_eval)
        && (config.calibrate || config.tune_threshold)
    {
        let plain = e.with_decision(&model.labels, None, 1.0)?;
        let temperature = if config.calibrate { fit_temperature(&plain.logits, &plain.gold) } else { 1.0 };
        if config.calibrate {
            eprintln!(
                "temperature {temperature:.4} fitted on {}: ECE {:.4} before, {:.4} after (15 bins)",
                data.path.display(),
                plain.ece(1.0).unwrap_or(0.0),
                plain.ece(temperature).unwrap_or(0.0)
            );
            settings.temperature = Some(temperature);
        }
        let calibrated = plain.with_decision(&model.labels, None, temperature)?;
        let threshold = if config.tune_threshold { calibrated.best_binary_threshold().map(|(t, _)| t) } else { None };
        if let Some(t) = threshold {
            let tuned = calibrated.with_decision(&model.labels, Some(t), temperature)?;
            eprintln!(
                "threshold {t:.4} on P({}) tuned on {}: F1 of `{}` {:.4} at the argmax, {:.4} tuned",
                model.labels[1],
                data.path.display(),
                model.labels[1],
                f1_of(&calibrated, 1),
                f1_of(&tuned, 1)
            );
            settings.threshold = Some(t);
            final_eval = Some(tuned);
            argmax_eval = Some(calibrated);
        } else {
            final_eval = Some(calibrated);
        }
    }
    let saved = (|| {
        save_model(&model, &config.output, DType::F32)?;
        tokenizer_files.write(&config.output)?;
        settings.write(&config.output)?;
        write_state(&config.output, &state)?;
        if let Some(e) = &final_eval {
            let mut json = e.to_json();
            if let (Some(a), true) = (&argmax_eval, e.threshold.is_some()) {
                // What the same model scores without the tuned threshold, for comparison.
                json["argmax"] = a.to_json();
            }
            write_atomic(&config.output.join("metrics.json"), serde_json::to_string_pretty(&json).expect("json").as_bytes())?;
        }
        Ok(())
    })();
    if let Err(e) = saved {
        // No half-written final model: its files go, and the log is cut back to what is kept.
        for name in model_files().into_iter().chain([SETTINGS_FILE, STATE_FILE, "metrics.json"]) {
            let _ = std::fs::remove_file(config.output.join(name));
        }
        return Err(after_failed_save(config, &state, e));
    }
    if let (Some(e), Some(data)) = (&final_eval, &eval_data) {
        write_run_report(config, &model.labels, &imbalance, e, data)?;
    }
    Ok(TrainSummary {
        steps: state.step,
        seconds: start.elapsed().as_secs_f64(),
        real_tokens: state.real_tokens,
        final_eval,
        best_step: state.best_step,
        output: config.output.clone(),
    })
}

/// `--max-length`, clamped to what the model's position table holds, with a note when it is.
pub fn effective_max_length(requested: usize, max_positions: usize) -> usize {
    if requested > max_positions {
        eprintln!("note: --max-length {requested} is above the model's max_position_embeddings; clamped to {max_positions}");
    }
    requested.min(max_positions)
}

/// The F1 of class `c` in a single-label evaluation (0 for other tasks).
fn f1_of(e: &Evaluation, c: usize) -> f64 {
    match &e.report {
        crate::metrics::evaluation::TaskReport::Classification(r) => r.per_class.get(c).map_or(0.0, |s| s.f1),
        _ => 0.0,
    }
}

fn epoch_float(state: &TrainingState, batches_per_epoch: usize) -> f64 {
    state.epoch as f64 + state.batch_in_epoch as f64 / batches_per_epoch.max(1) as f64
}

/// A line for the user above the progress bar, or on stderr when the bar is
/// hidden (stderr is not a terminal), where `println` would drop it.
fn say(bar: &ProgressBar, line: String) {
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

/// `--head-bias-init prior`: a head this run initialised starts from the
/// training labels' prior (src/train/head_prior.rs); a trained head is kept.
fn set_prior_bias(model: &mut BertClassifier, initialized: &[String], train_data: &EncodedDataset) -> Result<()> {
    let name = "classifier.bias";
    if !initialized.iter().any(|n| n == name) {
        eprintln!("note: --head-bias-init prior: the checkpoint has a trained head for these labels, so its bias is kept");
        return Ok(());
    }
    let index = model.params.position(name)?;
    let bias = &mut model.params.tensors_mut()[index];
    let prior = super::head_prior::prior_bias(&train_data.targets, bias.numel());
    let shape = bias.shape().to_vec();
    *bias = Tensor::from_vec(prior.clone(), &shape)?.to_dtype(bias.dtype());
    let shown: Vec<String> = prior.iter().take(8).map(|b| format!("{b:.2}")).collect();
    eprintln!("head bias initialised from the training labels' prior: [{}{}]", shown.join(", "), if prior.len() > 8 { ", …" } else { "" });
    Ok(())
}
