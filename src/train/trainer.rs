//! The training loop: batches → forward (dropout on) → loss → backward →
//! gradient accumulation → clipping → AdamW with the schedule; logging,
//! evaluation, best-model selection, early stopping and checkpoints around it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use std::sync::Arc;

use super::augment::{Augmentation, add_augmentation};
use super::dataset::{DataSpec, DocumentWindows, EncodedDataset, sampled_batches};
use super::evaluate::{Redecide, evaluate, evaluate_with};
use super::imbalance::ImbalanceSetup;
use super::long_text::ChunkLoss;
use super::options::TrainConfig;
use super::output_dir::prepare_output;
use super::run_files::{after_failed_save, save_model_dir, write_run_report};
use super::run_start::{StepPlan, start_run};
use super::state::{
    RunIdentity, STATE_FILE, TrainingState, check_same_run, is_checkpoint, model_files, read_state, sibling, write_checkpoint, write_state,
};
use super::step_loop::{EvalContext, Job, MicroBatch, MicroOutcome, add_gradients, epoch_float, run_steps, say};
use crate::autograd::Tape;
use crate::autograd::row_scale::scale_row_gradients;
use crate::autograd::windows::aggregate_windows;
use crate::backend::open_device;
use crate::data::BerthTokenizer;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::calibration::fit_temperature;
use crate::metrics::evaluation::Evaluation;
use crate::model::checkpoint::TokenizerFiles;
use crate::model::params::{ParamStore, WeightCache};
use crate::model::settings::{DataSettings, InferenceSettings, SETTINGS_FILE, Truncation};
use crate::model::task::Task;
use crate::model::{BertClassifier, ForwardMode, LoadOptions, load_model, save_model};
use crate::optim::AdamW;
use crate::tensor::{DType, Tensor};

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
    let max_length = effective_max_length(config.max_length, model.config.max_sequence_length());
    let mut tokenizer = BerthTokenizer::from_dir(&model_dir, max_length)?;
    tokenizer.check_vocab(model.config.vocab_size)?;
    if let Some(chunks) = config.long_text {
        tokenizer.enable_windows(chunks.stride)?;
    }
    tokenizer.set_truncation_direction(config.truncation_direction)?;
    let mut train_data = spec.encode(&config.train, &train_raw, &labels, &tokenizer)?;
    let augmentation = add_augmentation(config, &spec, &labels, &tokenizer, &mut train_data)?;
    let train_data = train_data;
    let eval_data = match &eval_raw {
        Some((path, raw)) => Some(spec.encode(path, raw, &labels, &tokenizer)?),
        None => None,
    };
    // Under a document loss the examples are the documents; otherwise the rows (windows when chunked).
    let document_loss = match &train_data.documents {
        Some(documents) if config.chunk_loss == ChunkLoss::Document => Some(documents),
        _ => None,
    };
    let example_targets = document_loss.map_or(&train_data.targets, |d| &d.targets);
    if config.head_bias_init == super::option_text::HeadBiasInit::Prior && resume.is_none() {
        set_prior_bias(&mut model, &report.initialized, example_targets)?;
    }
    if let Some(spec) = &config.freeze {
        model.trainable = spec.trainable(model.params.names(), model.config.num_hidden_layers, model.config.family)?;
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
        long_text: config.long_text,
        // Saved only when it is not the default, so other models' files stay as they were.
        truncation_direction: (config.truncation_direction == Truncation::Left).then_some(Truncation::Left),
        ..InferenceSettings::default()
    };
    // Under a document loss the sampler draws documents, and class weights count them.
    let imbalance = ImbalanceSetup::new(config, example_targets, &names)?;
    let lengths: Vec<usize> = match document_loss {
        Some(documents) => {
            documents.spans.iter().map(|&(start, n)| (start..start + n).map(|r| train_data.encodings[r].ids.len()).sum()).collect()
        }
        None => train_data.encodings.iter().map(|e| e.ids.len()).collect(),
    };
    let batches_per_epoch = imbalance.sampler.epoch_length().div_ceil(config.batch_size) as u64;
    let plan = StepPlan::new(config, batches_per_epoch);
    let mut run =
        start_run(config, &model.params, &model.trainable, &plan, names.clone(), identity, resume.as_ref(), (&device, precision))?;
    eprintln!("configuration:\n{}", serde_json::to_string_pretty(&TrainConfig { max_length, ..config.clone() }).expect("serialisable"));
    eprintln!(
        "data ({}): {} training rows ({} real tokens), {} evaluation rows, {} labels: {}",
        config.task.name(),
        train_data.len(),
        train_data.real_tokens(),
        eval_data.as_ref().map_or(0, EncodedDataset::len),
        names.len(),
        names.join(", ")
    );
    for line in &augmentation.lines {
        eprintln!("{line}");
    }
    for (what, data) in [("training", Some(&train_data)), ("evaluation", eval_data.as_ref())] {
        if let Some(documents) = data.and_then(|d| d.documents.as_ref()) {
            eprintln!("{}", describe_windows(what, documents, data.map_or(0, EncodedDataset::len), config));
        }
    }
    eprintln!(
        "plan: {} optimizer steps ({} per epoch, {} examples per step), warmup {}, {} of {} parameters trained",
        plan.total_steps,
        plan.steps_per_epoch,
        config.batch_size * config.grad_accum,
        plan.warmup_steps,
        model.trained_parameter_count(),
        model.params.count()
    );

    if document_loss.is_some() {
        eprintln!("{}", describe_document_batches(&train_data, &imbalance, &lengths, config));
    }

    let mut best_params: Option<ParamStore> = None;
    if run.state.best_step.is_some() {
        let best_dir = config.output.join("best");
        if best_dir.join("model.safetensors").is_file() {
            best_params = Some(load_model(&best_dir, &load)?.0.params);
        }
    }
    let pad_id = tokenizer.pad_id();
    let mut job = SingleJob {
        config,
        model,
        train_data: &train_data,
        lengths,
        imbalance: &imbalance,
        augmentation: &augmentation,
        eval_data: eval_data.as_ref(),
        pad_id,
        settings: &settings,
        tokenizer_files: &tokenizer_files,
        best_params,
        last_eval: None,
    };
    run_steps(&mut job, &mut run)?;
    let SingleJob { mut model, best_params, last_eval, .. } = job;
    let state = run.state;

    let finish = Finish { config, eval_data: eval_data.as_ref(), pad_id };
    let mut final_eval = finish.restore_best(&mut model, best_params, last_eval, &state)?;
    let mut settings = settings;
    let argmax_eval = finish.tune_decision(&model, &mut final_eval, &mut settings)?;
    finish.save(&model, &tokenizer_files, &settings, &state, final_eval.as_ref(), argmax_eval.as_ref())?;
    if let (Some(e), Some(data)) = (&final_eval, &eval_data) {
        write_run_report(config, &model.labels, &imbalance, &augmentation.lines, e, data)?;
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

/// The finish of a single-task run, phase by phase: the best model, the
/// decision tuning (thresholds, temperature), and the final save.
struct Finish<'a> {
    config: &'a TrainConfig,
    eval_data: Option<&'a EncodedDataset>,
    pad_id: u32,
}

impl Finish<'_> {
    /// The best model (when there was evaluation) becomes the output; returns
    /// the evaluation of the model that is kept.
    fn restore_best(
        &self,
        model: &mut BertClassifier,
        best_params: Option<ParamStore>,
        last_eval: Option<Evaluation>,
        state: &TrainingState,
    ) -> Result<Option<Evaluation>> {
        let mut final_eval = last_eval;
        if let Some(best) = best_params
            && state.best_step != Some(state.step)
        {
            model.params = best;
            eprintln!("restored the best model, from step {}", state.best_step.unwrap_or(0));
            if let Some(data) = self.eval_data {
                final_eval = Some(evaluate(model, data, self.config.batch_size.max(32), self.pad_id)?);
            }
        }
        Ok(final_eval)
    }

    /// Multi-label thresholds, then for single-label the temperature and the
    /// binary threshold, each fitted on the evaluation file and saved in
    /// `settings`; `final_eval` becomes the tuned evaluation. Returns the
    /// calibrated argmax evaluation when a threshold was tuned, for comparison.
    fn tune_decision(
        &self,
        model: &BertClassifier,
        final_eval: &mut Option<Evaluation>,
        settings: &mut InferenceSettings,
    ) -> Result<Option<Evaluation>> {
        let config = self.config;
        if config.tune_thresholds
            && let (Some(data), Some(e)) = (self.eval_data, final_eval.as_ref())
        {
            let untuned = e.with_thresholds(&model.labels, vec![0.5; model.num_labels()])?;
            let tuned = e.with_tuned_thresholds(&model.labels, config.threshold_min_positives)?;
            let min = config.threshold_min_positives;
            let pooled = crate::metrics::rare_labels(&e.gold_multi, model.num_labels(), min).len();
            let pooled_note = match pooled {
                0 => String::new(),
                n => format!("; {n} labels with fewer than {min} positives share one pooled threshold (--threshold-min-positives)"),
            };
            eprintln!(
                "thresholds tuned on {}: macro F1 {:.4} at 0.5, {:.4} tuned{pooled_note}",
                data.path.display(),
                untuned.metric("macro_f1"),
                tuned.metric("macro_f1")
            );
            settings.thresholds = tuned.thresholds().map(<[f64]>::to_vec);
            *final_eval = Some(tuned);
        }
        // Single-label: temperature first, then the binary threshold on the
        // calibrated probabilities, which is the order predict applies them in.
        let (Some(data), Some(e)) = (self.eval_data, final_eval.as_ref()) else { return Ok(None) };
        if !(config.calibrate || config.tune_threshold) {
            return Ok(None);
        }
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
        let Some(t) = threshold else {
            *final_eval = Some(calibrated);
            return Ok(None);
        };
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
        *final_eval = Some(tuned);
        Ok(Some(calibrated))
    }

    /// Writes the final model, tokenizer, settings, state and metrics.json;
    /// on a failure none of them is left half-written.
    fn save(
        &self,
        model: &BertClassifier,
        tokenizer_files: &TokenizerFiles,
        settings: &InferenceSettings,
        state: &TrainingState,
        final_eval: Option<&Evaluation>,
        argmax_eval: Option<&Evaluation>,
    ) -> Result<()> {
        let output = &self.config.output;
        let saved = (|| {
            save_model(model, output, DType::F32)?;
            tokenizer_files.write(output)?;
            settings.write(output)?;
            write_state(output, state)?;
            if let Some(e) = final_eval {
                let mut json = e.to_json();
                if let (Some(a), true) = (argmax_eval, e.threshold.is_some()) {
                    // What the same model scores without the tuned threshold, for comparison.
                    json["argmax"] = a.to_json();
                }
                write_atomic(&output.join("metrics.json"), serde_json::to_string_pretty(&json).expect("json").as_bytes())?;
            }
            Ok(())
        })();
        if let Err(e) = saved {
            // No half-written final model: its files go, and the log is cut back to what is kept.
            for name in model_files().into_iter().chain([SETTINGS_FILE, STATE_FILE, "metrics.json"]) {
                let _ = std::fs::remove_file(output.join(name));
            }
            return Err(after_failed_save(self.config, state, e));
        }
        Ok(())
    }
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

/// `--head-bias-init prior`: a head this run initialised starts from the
/// training labels' prior (src/train/head_prior.rs); a trained head is kept.
fn set_prior_bias(model: &mut BertClassifier, initialized: &[String], targets: &super::dataset::Targets) -> Result<()> {
    let name = "classifier.bias";
    if !initialized.iter().any(|n| n == name) {
        eprintln!("note: --head-bias-init prior: the checkpoint has a trained head for these labels, so its bias is kept");
        return Ok(());
    }
    let index = model.params.position(name)?;
    let bias = &mut model.params.tensors_mut()[index];
    let prior = super::head_prior::prior_bias(targets, bias.numel());
    let shape = bias.shape().to_vec();
    *bias = Tensor::from_vec(prior.clone(), &shape)?.to_dtype(bias.dtype());
    let shown: Vec<String> = prior.iter().take(8).map(|b| format!("{b:.2}")).collect();
    eprintln!("head bias initialised from the training labels' prior: [{}{}]", shown.join(", "), if prior.len() > 8 { ", …" } else { "" });
    Ok(())
}

/// The rows of each micro-batch of an epoch: batches of rows as the sampler
/// draws them, or under a document loss, batches of documents that hold all
/// their windows.
fn epoch_rows(data: &EncodedDataset, imbalance: &ImbalanceSetup, lengths: &[usize], config: &TrainConfig, epoch: u64) -> Vec<Vec<usize>> {
    let batches = sampled_batches(&imbalance.sampler, lengths, config.batch_size, config.seed, epoch, config.length_bucketing);
    match &data.documents {
        Some(documents) if config.chunk_loss == ChunkLoss::Document => batches.iter().map(|b| documents.rows_of(b)).collect(),
        _ => batches,
    }
}

/// A document-loss micro-batch's rows back as documents: the local
/// (first row, windows) spans and the document ids. A document drawn twice
/// (a sampler with replacement) is two spans: each copy restarts at its first row.
fn document_spans(documents: &DocumentWindows, rows: &[usize]) -> (Vec<(usize, usize)>, Vec<usize>) {
    let (mut spans, mut ids) = (Vec::new(), Vec::new());
    for (i, &row) in rows.iter().enumerate() {
        let d = documents.spans.partition_point(|&(start, _)| start <= row) - 1;
        if documents.spans[d].0 == row {
            spans.push((i, documents.spans[d].1));
            ids.push(d);
        }
    }
    (spans, ids)
}

/// The data line of a chunked file: windows per document, and what --max-chunks cut.
fn describe_windows(what: &str, documents: &DocumentWindows, windows: usize, config: &TrainConfig) -> String {
    let n = documents.spans.len();
    let longer = documents.spans.iter().filter(|s| s.1 > 1).count();
    let capped = match config.long_text.and_then(|c| c.max_chunks) {
        Some(limit) if documents.capped_documents > 0 => format!(
            "; {} documents had more than --max-chunks {limit} windows, and their last {} windows are not read",
            documents.capped_documents, documents.dropped_windows
        ),
        _ => String::new(),
    };
    format!(
        "long text ({what}): {n} documents in {windows} windows ({:.2} per document; {longer} documents longer than one window), aggregate {}{capped}",
        windows as f64 / n.max(1) as f64,
        documents.aggregate.name()
    )
}

/// The plan's note under a document loss: how many of the first epoch's
/// batches grew past --batch-size windows to keep their documents whole.
fn describe_document_batches(data: &EncodedDataset, imbalance: &ImbalanceSetup, lengths: &[usize], config: &TrainConfig) -> String {
    let batches = epoch_rows(data, imbalance, lengths, config, 0);
    let grew = batches.iter().filter(|b| b.len() > config.batch_size).count();
    let largest = batches.iter().map(Vec::len).max().unwrap_or(0);
    format!(
        "document loss: each batch is --batch-size {} documents with all their windows; in epoch 1, {grew} of {} batches grew past {} windows (the largest holds {largest})",
        config.batch_size,
        batches.len(),
        config.batch_size
    )
}

/// A single-task run, as the loop sees it: one head, the sampler's batches,
/// evaluation with best-model selection and early stopping.
struct SingleJob<'a> {
    config: &'a TrainConfig,
    model: BertClassifier,
    train_data: &'a EncodedDataset,
    lengths: Vec<usize>,
    imbalance: &'a ImbalanceSetup,
    augmentation: &'a Augmentation,
    eval_data: Option<&'a EncodedDataset>,
    pad_id: u32,
    settings: &'a InferenceSettings,
    tokenizer_files: &'a TokenizerFiles,
    /// The parameters at the best evaluation so far.
    best_params: Option<ParamStore>,
    last_eval: Option<Evaluation>,
}

impl Job for SingleJob<'_> {
    type StepCache = Option<WeightCache>;

    fn store(&self) -> &ParamStore {
        &self.model.params
    }

    fn store_mut(&mut self) -> &mut ParamStore {
        &mut self.model.params
    }

    fn epoch_plan(&self, epoch: u64) -> Vec<MicroBatch> {
        epoch_rows(self.train_data, self.imbalance, &self.lengths, self.config, epoch)
            .into_iter()
            .map(|rows| MicroBatch { head: 0, rows })
            .collect()
    }

    /// The CPU's GEMMs want the transposed weights; a device does not.
    fn step_cache(&self, on_device: bool) -> Result<Option<WeightCache>> {
        if on_device { Ok(None) } else { Ok(Some(self.model.weight_cache_for(self.config.precision)?)) }
    }

    fn micro_batch(
        &self,
        micro: &MicroBatch,
        device_params: Option<&[Tensor]>,
        cache: &Option<WeightCache>,
        mode: ForwardMode,
        grad_scale: f64,
        grads: &mut [Option<Tensor>],
    ) -> Result<MicroOutcome> {
        let model = &self.model;
        let (batch, targets) = self.train_data.batch(&micro.rows, self.pad_id);
        let mut tape = Tape::new();
        if self.config.profile {
            tape.enable_profile();
        }
        let out = match device_params {
            Some(params) => model.forward_on(&mut tape, params, &batch, mode)?,
            None => model.forward_cached(&mut tape, &batch, mode, cache.as_ref())?,
        };
        // --augment-weight scales the synthetic rows' terms (examples are documents under a document loss).
        let scaled = |tape: &mut Tape, logits, ids: &[usize], documents: bool| match self.augmentation.loss_scales(ids, documents) {
            Some(scales) => scale_row_gradients(tape, logits, Arc::from(scales)),
            None => Ok(logits),
        };
        let loss = match (&self.train_data.documents, self.config.chunk_loss) {
            (Some(documents), ChunkLoss::Document) => {
                // The rows are whole documents' windows; the loss is on each document's combined logits.
                let (spans, ids) = document_spans(documents, &micro.rows);
                let logits = aggregate_windows(&mut tape, out.logits, Arc::from(spans), documents.aggregate)?;
                let logits = scaled(&mut tape, logits, &ids, true)?;
                model.loss_with(&mut tape, logits, &documents.targets.labels(&ids, 0), &self.imbalance.loss)?
            }
            _ => {
                let logits = scaled(&mut tape, out.logits, &micro.rows, false)?;
                model.loss_with(&mut tape, logits, &targets, &self.imbalance.loss)?
            }
        };
        let loss_value = tape.value(loss).to_f64_vec()[0];
        if !loss_value.is_finite() {
            return Ok(MicroOutcome { loss: loss_value, real_tokens: 0, profile: tape.profile().cloned() });
        }
        let mut g = tape.backward_with(loss, Tensor::full(&[1], grad_scale, model.dtype()))?;
        add_gradients(grads, 0..out.params.len(), |k| g.take(out.params[k]))?;
        Ok(MicroOutcome { loss: loss_value, real_tokens: batch.real_tokens(), profile: tape.profile().cloned() })
    }

    fn loss_key(&self, _: usize) -> String {
        "loss".into()
    }

    fn head_name(&self, _: usize) -> Option<&str> {
        None
    }

    fn evaluate(&mut self, ctx: &mut EvalContext) -> Result<bool> {
        let Some(data) = self.eval_data else { return Ok(false) };
        let config = self.config;
        let model = &self.model;
        let mut evaluation = evaluate_with(model, ctx.device_params, data, config.batch_size.max(32), self.pad_id, None)?;
        if config.tune_thresholds {
            // Select the best model by what predict will do: tuned thresholds.
            evaluation = evaluation.with_tuned_thresholds(&model.labels, config.threshold_min_positives)?;
        }
        if config.tune_threshold
            && let Some((t, _)) = evaluation.best_binary_threshold()
        {
            evaluation = evaluation.with_decision(&model.labels, Some(t), 1.0)?;
        }
        let value = evaluation.metric(&config.metric_for_best);
        let state = &mut *ctx.state;
        let mut entry = json!({"step": state.step, "epoch": epoch_float(state, ctx.batches_in_epoch)});
        for (key, v) in evaluation.log_fields() {
            entry[key] = json!(v);
        }
        ctx.log.write(entry)?;
        let fields: Vec<String> =
            evaluation.log_fields().iter().map(|(k, v)| format!("{} {v:.4}", k.trim_start_matches("eval_"))).collect();
        say(ctx.bar, format!("step {}: eval {} = {value:.4} ({})", state.step, config.metric_for_best, fields.join(", ")));
        let improved = state.best_metric.is_none_or(|best| if config.greater_is_better { value > best } else { value < best });
        let mut stop = false;
        if improved {
            state.best_metric = Some(value);
            state.best_step = Some(state.step);
            state.evals_without_improvement = 0;
            self.best_params = Some(model.params.clone());
            let best_settings = InferenceSettings {
                thresholds: evaluation.thresholds().map(<[f64]>::to_vec),
                threshold: evaluation.threshold,
                ..self.settings.clone()
            };
            let best_dir = config.output.join("best");
            if let Err(e) = save_model_dir(model, &best_dir, self.tokenizer_files, &best_settings) {
                let _ = std::fs::remove_dir_all(sibling(&best_dir, "tmp"));
                // The best step is the one whose save failed: it is not kept.
                state.best_step = None;
                return Err(after_failed_save(config, state, e));
            }
        } else {
            state.evals_without_improvement += 1;
            if config.early_stopping_patience.is_some_and(|p| state.evals_without_improvement >= p) {
                say(ctx.bar, format!("early stopping: no improvement in {} evaluations", state.evals_without_improvement));
                stop = true;
            }
        }
        self.last_eval = Some(evaluation);
        Ok(stop)
    }

    fn write_checkpoint(&self, dir: &Path, optimizer: &AdamW, state: &TrainingState) -> Result<()> {
        write_checkpoint(dir, &self.model, optimizer, state, self.tokenizer_files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::chunks::Aggregate;
    use crate::train::dataset::Targets;

    fn three_documents() -> DocumentWindows {
        // Document 0 has rows 0..2, document 1 row 2, document 2 rows 3..6.
        DocumentWindows {
            spans: vec![(0, 2), (2, 1), (3, 3)],
            targets: Targets::Single(vec![0, 1, 0]),
            aggregate: Aggregate::Max,
            capped_documents: 0,
            dropped_windows: 0,
        }
    }

    #[test]
    fn document_spans_finds_each_document_of_a_batch_in_order() {
        let documents = three_documents();
        let rows = documents.rows_of(&[2, 0]);
        assert_eq!(rows, vec![3, 4, 5, 0, 1]);
        assert_eq!(document_spans(&documents, &rows), (vec![(0, 3), (3, 2)], vec![2, 0]));
    }

    #[test]
    fn a_document_drawn_twice_is_two_spans() {
        // A sampler with replacement can put one document twice in a batch.
        let documents = three_documents();
        let rows = documents.rows_of(&[1, 2, 1, 2]);
        assert_eq!(rows, vec![2, 3, 4, 5, 2, 3, 4, 5]);
        let (spans, ids) = document_spans(&documents, &rows);
        assert_eq!(spans, vec![(0, 1), (1, 3), (4, 1), (5, 3)]);
        assert_eq!(ids, vec![1, 2, 1, 2]);
    }
}
