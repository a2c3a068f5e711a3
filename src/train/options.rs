//! `berth train` options: command-line flags, an optional TOML file with the
//! same keys (flags win), and HF Trainer's defaults for whatever neither sets.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::class_weights::ClassWeightSpec;
use super::freeze::FreezeSpec;
use super::long_text::{ChunkLoss, LongTextArgs};
use super::option_groups::{DataColumnOptions, flag_keys, take_group, unknown_key};
use super::option_text::{FocalAlpha, HeadBiasInit, OptionText, as_text, opt_text};
use crate::backend::DeviceArgs;
use crate::data::align::Alignment;
use crate::data::sampler::SamplerKind;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::model::device_model::Precision;
use crate::model::settings::{ChunkSettings, Truncation};
use crate::model::task::Task;
use crate::model::{LossKind, LossName};
use crate::optim::ScheduleKind;

/// Every option is optional here, so a flag can override the file and the
/// file can override the default. Keys in the TOML file are the flag names
/// without the leading dashes (`batch-size = 32`).
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainOptions {
    /// Pre-trained model folder (config.json, model.safetensors, tokenizer files).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data file.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Multi-task: a TOML file of `[[head]]` entries (name, task, train, eval,
    /// columns, labels, loss-weight) trained together on one encoder; replaces
    /// --train and --eval. See the README's "Multi-task" section.
    #[arg(long)]
    pub heads: Option<PathBuf>,
    /// Evaluation data file; without it there is no evaluation and no best-model selection.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Output folder for the fine-tuned model, checkpoints and logs.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A TOML file with any of these options (flags override it).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// classification, multi-label, token-classification or regression (default classification).
    #[arg(long)]
    pub task: Option<String>,
    /// The data file's format and columns.
    #[command(flatten)]
    #[serde(skip)]
    pub columns: DataColumnOptions,
    /// Token tasks: which sub-tokens of a word get its label: first (the rest are
    /// ignored by the loss) or all (a B- continuation becomes I-) (default first).
    #[arg(long)]
    pub alignment: Option<String>,
    /// Multi-label: after training, choose each label's threshold to maximise
    /// its F1 on the evaluation file; saved with the model and used by predict.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tune_thresholds: Option<bool>,
    /// With --tune-thresholds: a label with fewer positives than this in the
    /// evaluation file shares one threshold with the other such labels, tuned
    /// on their pooled cells, instead of one fitted to a handful of examples
    /// (default 5; 1 tunes every label alone).
    #[arg(long)]
    pub threshold_min_positives: Option<usize>,
    /// Class imbalance: per-class loss weights: inverse, sqrt-inverse or
    /// effective[:beta] (from the training counts, scaled to mean 1; beta
    /// 0.9999 by default), or a file with one weight per class. Multi-label
    /// tasks get one pos_weight per label.
    #[arg(long)]
    pub class_weights: Option<String>,
    /// Which examples an epoch visits: random (each once), weighted[:R]
    /// (with replacement, classes balanced, or the majority at most R times
    /// any class) or undersample[:R] (each class cut to at most R times the
    /// smallest). Seeded by --seed. Single-label tasks.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Examples per epoch (default: the training set's size; for undersample,
    /// the examples kept).
    #[arg(long, allow_negative_numbers = true)]
    pub epoch_length: Option<usize>,
    /// ce (the task's standard loss: cross-entropy, BCE for multi-label) or
    /// focal (softmax focal, sigmoid focal for multi-label).
    #[arg(long)]
    pub loss: Option<String>,
    /// Focal loss: gamma ≥ 0 (default 2; 0 is cross-entropy).
    #[arg(long, allow_hyphen_values = true)]
    pub focal_gamma: Option<f64>,
    /// Focal loss: per-class alpha `a,b,c` (one value for two classes: the
    /// positive class's, 1 − it for the other; multi-label: one value, the
    /// positives' weight).
    #[arg(long)]
    pub focal_alpha: Option<String>,
    /// Binary classification: choose the positive class's (the second
    /// label's) probability threshold that maximises F1 on the evaluation
    /// file; saved with the model and used by predict.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tune_threshold: Option<bool>,
    /// Single-label: after training, fit a temperature on the evaluation
    /// file (temperature scaling); saved with the model and applied by predict.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub calibrate: Option<bool>,
    /// Parameters that are not trained: embeddings, layers:0-3, encoder (all of
    /// the encoder: the head alone trains), or several joined by `,`.
    #[arg(long)]
    pub freeze: Option<String>,
    /// A new head's bias: zero (as transformers initialises it) or prior (each
    /// label's training frequency: log-odds for multi-label, log-frequency for
    /// classes and tags, the mean for regression) (default zero).
    #[arg(long)]
    pub head_bias_init: Option<String>,
    /// A file with one label per line: fixes the label set and its order.
    #[arg(long)]
    pub labels: Option<PathBuf>,

    /// Number of passes over the training data (default 3; fractions allowed).
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<f64>,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long, allow_negative_numbers = true)]
    pub max_steps: Option<u64>,
    /// Examples per forward pass (default 8).
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Forward passes accumulated per optimizer step (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate (default 2e-5).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Decoupled weight decay; biases and LayerNorm weights are exempt (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Warmup as a fraction of all optimizer steps (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub warmup_ratio: Option<f64>,
    /// Warmup as a number of optimizer steps (overrides --warmup-ratio).
    #[arg(long, allow_negative_numbers = true)]
    pub warmup_steps: Option<u64>,
    /// Decay after warmup: linear, cosine or constant (default linear).
    #[arg(long)]
    pub schedule: Option<String>,
    /// Clip gradients to this global L2 norm; 0 turns clipping off (default 1.0).
    #[arg(long, allow_negative_numbers = true)]
    pub max_grad_norm: Option<f64>,
    /// Tokens per example after truncation, longest-first for pairs (default 128).
    #[arg(long, allow_negative_numbers = true)]
    pub max_length: Option<usize>,
    /// How a text longer than --max-length is read: `--long-text chunk` cuts
    /// it into overlapping windows (saved with the model, so that eval,
    /// predict and serve read it the same way).
    #[command(flatten)]
    #[serde(skip)]
    pub long_text: LongTextArgs,
    /// With --long-text chunk: window (each window is an example carrying its
    /// document's label) or document (the loss on the aggregated document
    /// logits; a batch is --batch-size documents with all their windows)
    /// (default window).
    #[arg(long, value_name = "window|document")]
    pub chunk_loss: Option<String>,
    /// Synthetic training examples (repeatable): files in --train's format
    /// and columns, added to the training set and marked by their source in
    /// the plan, the report and training_state.json; never evaluated on.
    #[arg(long, value_name = "FILE")]
    pub augment: Option<Vec<PathBuf>>,
    /// With --augment: the synthetic examples' loss terms are scaled by W
    /// (≥ 0; default 1).
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub augment_weight: Option<f64>,
    /// With --augment: synthetic examples are at most this share of any
    /// class (0 < S ≤ 1); the first of each file are kept, the rest dropped, with a note.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub augment_max_share: Option<f64>,
    /// Seed for data order, dropout and any new head (default 42).
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Group examples of similar length into batches to pad less (default true).
    #[arg(long)]
    pub length_bucketing: Option<bool>,
    /// CPU: compute only each batch's real tokens (packed rows; every
    /// dropout mask as in the padded layout, so the step is the padded one
    /// up to rounding); false computes the padding too, as a device does
    /// (default true).
    #[arg(long)]
    pub skip_padding: Option<bool>,

    /// Evaluate every N optimizer steps (default: at the end of every epoch).
    #[arg(long, allow_negative_numbers = true)]
    pub eval_every: Option<u64>,
    /// Write a checkpoint every N optimizer steps (default: none).
    #[arg(long, allow_negative_numbers = true)]
    pub save_every: Option<u64>,
    /// Keep at most this many step checkpoints; the oldest are deleted (default 2).
    #[arg(long, allow_negative_numbers = true)]
    pub save_limit: Option<usize>,
    /// Metric that picks the best model (default by task: accuracy, macro_f1 for multi-label,
    /// f1 for entities, pearson for regression; loss and the other metrics of the task are allowed).
    #[arg(long)]
    pub metric_for_best: Option<String>,
    /// Whether a larger metric is better (default: true, false for loss).
    #[arg(long)]
    pub greater_is_better: Option<bool>,
    /// Stop after this many evaluations without improvement (default: never).
    #[arg(long, allow_negative_numbers = true)]
    pub early_stopping_patience: Option<usize>,
    /// Log loss and learning rate every N optimizer steps (default 50).
    #[arg(long, allow_negative_numbers = true)]
    pub logging_steps: Option<u64>,
    /// `on` (the default): each log line adds the gradient norm and the
    /// update-to-weight ratio of the embeddings, each layer and the head,
    /// and the fraction of clipped steps; `off`: none of it is computed.
    #[arg(long)]
    pub diagnostics: Option<String>,
    /// Time every op of every step (forward, backward, clip and AdamW, the
    /// diagnostics) on the CPU; write profile.json into the output folder
    /// and a table into report.md. CPU only for now.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub profile: Option<bool>,
    /// Continue from a checkpoint folder written by an earlier run.
    #[arg(long)]
    #[serde(skip)]
    pub resume_from: Option<PathBuf>,
    /// Start afresh in an --output folder that holds an earlier run: its
    /// files (model, checkpoints, best/, logs, report) are removed first.
    /// A folder that also holds files berth did not write is refused.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub overwrite: Option<bool>,
    /// `--device` and `--precision`.
    #[command(flatten)]
    #[serde(skip)]
    pub device: DeviceArgs,
}

/// An optional flag's typed value, parsed from its text.
fn parse_some<T: OptionText>(text: &Option<String>) -> Result<Option<T>> {
    text.as_deref().map(T::from_text).transpose()
}

macro_rules! merge_fields {
    ($flags:expr, $file:expr, $($field:ident),* $(,)?) => {
        TrainOptions {
            $($field: $flags.$field.clone().or_else(|| $file.$field.clone()),)*
            columns: $flags.columns.or(&$file.columns),
            device: $flags.device.or(&$file.device),
            long_text: $flags.long_text.or(&$file.long_text),
        }
    };
}

impl TrainOptions {
    /// Reads a TOML options file: its keys are the flag names without the
    /// dashes, split among the shared groups (`option_groups`) and the rest.
    pub fn from_toml_file(path: &Path) -> Result<TrainOptions> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::Config { path: path.into(), message };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // Flags a file cannot set: where the file is, and a run's resume point.
        let known: Vec<String> = flag_keys::<TrainOptions>().into_iter().filter(|k| k != "config" && k != "resume-from").collect();
        if let Some(message) = unknown_key(&text, &table, &known) {
            return Err(bad(message));
        }
        let columns = take_group::<DataColumnOptions>(&mut table).map_err(|e| bad(e.to_string()))?;
        let device = take_group::<DeviceArgs>(&mut table).map_err(|e| bad(e.to_string()))?;
        let long_text = take_group::<LongTextArgs>(&mut table).map_err(|e| bad(e.to_string()))?;
        let options: TrainOptions = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| bad(e.to_string()))?;
        Ok(TrainOptions { columns, device, long_text, ..options })
    }

    /// Flags first, then the file's values.
    pub fn merged_over(&self, file: &TrainOptions) -> TrainOptions {
        merge_fields!(
            self,
            file,
            model,
            train,
            heads,
            eval,
            output,
            config,
            task,
            alignment,
            tune_thresholds,
            threshold_min_positives,
            class_weights,
            sampler,
            epoch_length,
            loss,
            focal_gamma,
            focal_alpha,
            tune_threshold,
            calibrate,
            freeze,
            head_bias_init,
            labels,
            epochs,
            max_steps,
            batch_size,
            grad_accum,
            lr,
            weight_decay,
            warmup_ratio,
            warmup_steps,
            schedule,
            max_grad_norm,
            max_length,
            chunk_loss,
            augment,
            augment_weight,
            augment_max_share,
            seed,
            length_bucketing,
            skip_padding,
            eval_every,
            save_every,
            save_limit,
            metric_for_best,
            greater_is_better,
            early_stopping_patience,
            logging_steps,
            diagnostics,
            profile,
            resume_from,
            overwrite,
        )
    }

    /// Applies defaults and checks every value.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let required = |v: &Option<PathBuf>, flag: &str| {
            v.clone().ok_or_else(|| Error::InvalidArgument(format!("--{flag} is required (as a flag or in the --config file)")))
        };
        let task = Task::parse(self.task.as_deref().unwrap_or("classification"))?;
        let metric = self.metric_for_best.clone().unwrap_or_else(|| task.default_metric().into());
        if !task.metrics().contains(&metric.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "--metric-for-best `{metric}` is not a {} metric: use {}",
                task.name(),
                task.metrics().join(", ")
            )));
        }
        if self.threshold_min_positives.is_some() && self.tune_thresholds != Some(true) {
            return Err(Error::InvalidArgument("--threshold-min-positives applies to --tune-thresholds; add it or drop the flag".into()));
        }
        // The enumerated options, parsed once.
        let alignment = Alignment::from_text(self.alignment.as_deref().unwrap_or("first"))?;
        let sampler = SamplerKind::from_text(self.sampler.as_deref().unwrap_or("random"))?;
        let schedule = ScheduleKind::from_text(self.schedule.as_deref().unwrap_or("linear"))?;
        let head_bias_init = HeadBiasInit::from_text(self.head_bias_init.as_deref().unwrap_or("zero"))?;
        let loss = LossName::from_text(self.loss.as_deref().unwrap_or("ce"))?;
        let (focal_alpha, class_weights, freeze) =
            (parse_some(&self.focal_alpha)?, parse_some(&self.class_weights)?, parse_some(&self.freeze)?);
        let (device, precision) = (self.device.choice(), self.device.precision());
        if precision == Precision::Int8 {
            return Err(Error::InvalidArgument(format!("--precision int8 for training: {}", crate::tensor::INT8_IS_CPU_INFERENCE)));
        }
        let (long_text, _) = self.long_text.resolve(None)?;
        let (truncation_direction, _) = self.long_text.direction(None, long_text.is_some())?;
        let chunk_loss = match (&self.chunk_loss, long_text) {
            (Some(name), Some(_)) => ChunkLoss::parse(name)?,
            (Some(_), None) => return Err(Error::InvalidArgument("--chunk-loss needs --long-text chunk".into())),
            (None, _) => ChunkLoss::Window,
        };
        let columns = &self.columns;
        let config = TrainConfig {
            model: required(&self.model, "model")?,
            train: if self.heads.is_some() { self.train.clone().unwrap_or_default() } else { required(&self.train, "train")? },
            heads: self.heads.clone(),
            eval: self.eval.clone(),
            output: required(&self.output, "output")?,
            task,
            format: columns.format.clone(),
            tag_column: columns.tag_column,
            alignment,
            label_separator: columns.label_separator.clone().unwrap_or_else(|| ",".into()),
            tune_thresholds: self.tune_thresholds.unwrap_or(false),
            threshold_min_positives: self.threshold_min_positives.unwrap_or(DEFAULT_THRESHOLD_MIN_POSITIVES),
            class_weights,
            sampler,
            epoch_length: self.epoch_length,
            loss,
            focal_gamma: self.focal_gamma,
            focal_alpha,
            tune_threshold: self.tune_threshold.unwrap_or(false),
            calibrate: self.calibrate.unwrap_or(false),
            freeze,
            head_bias_init,
            text_column: columns.text_column.clone().unwrap_or_else(|| "text".into()),
            text_pair_column: columns.text_pair_column.clone(),
            label_column: columns.label_column.clone().unwrap_or_else(|| "label".into()),
            header: columns.header,
            quoting: columns.quoting,
            labels: self.labels.clone(),
            epochs: self.epochs.unwrap_or(3.0),
            max_steps: self.max_steps,
            batch_size: self.batch_size.unwrap_or(8),
            grad_accum: self.grad_accum.unwrap_or(1),
            lr: self.lr.unwrap_or(2e-5),
            weight_decay: self.weight_decay.unwrap_or(0.0),
            warmup_ratio: self.warmup_ratio.unwrap_or(0.0),
            warmup_steps: self.warmup_steps,
            schedule,
            max_grad_norm: self.max_grad_norm.unwrap_or(1.0),
            max_length: self.max_length.unwrap_or(128),
            long_text,
            truncation_direction,
            chunk_loss,
            augment: self.augment.clone().unwrap_or_default(),
            augment_weight: self.augment_weight.unwrap_or(1.0),
            augment_max_share: self.augment_max_share,
            seed: self.seed.unwrap_or(42),
            length_bucketing: self.length_bucketing.unwrap_or(true),
            skip_padding: self.skip_padding.unwrap_or(true),
            eval_every: self.eval_every,
            save_every: self.save_every,
            save_limit: self.save_limit.unwrap_or(2),
            greater_is_better: self.greater_is_better.unwrap_or(metric != "loss"),
            metric_for_best: metric,
            early_stopping_patience: self.early_stopping_patience,
            logging_steps: self.logging_steps.unwrap_or(50),
            diagnostics: match self.diagnostics.as_deref() {
                None => true,
                Some(v) if v.eq_ignore_ascii_case("on") => true,
                Some(v) if v.eq_ignore_ascii_case("off") => false,
                Some(other) => return Err(Error::InvalidArgument(format!("--diagnostics {other}: use on or off"))),
            },
            profile: self.profile.unwrap_or(false),
            resume_from: self.resume_from.clone(),
            overwrite: self.overwrite.unwrap_or(false),
            device,
            precision,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The effective configuration of a run, printed at the start and saved with every checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub model: PathBuf,
    pub train: PathBuf,
    pub heads: Option<PathBuf>,
    pub eval: Option<PathBuf>,
    pub output: PathBuf,
    pub task: Task,
    pub format: Option<String>,
    pub tag_column: Option<usize>,
    #[serde(with = "as_text")]
    pub alignment: Alignment,
    pub label_separator: String,
    pub tune_thresholds: bool,
    /// Runs from before the flag tuned every label alone: 1.
    #[serde(default = "one")]
    pub threshold_min_positives: usize,
    #[serde(default, with = "opt_text")]
    pub class_weights: Option<ClassWeightSpec>,
    #[serde(default = "default_sampler", with = "as_text")]
    pub sampler: SamplerKind,
    #[serde(default)]
    pub epoch_length: Option<usize>,
    /// Absent in the states of runs from before the flag existed (the standard loss).
    #[serde(default, with = "as_text")]
    pub loss: LossName,
    #[serde(default)]
    pub focal_gamma: Option<f64>,
    #[serde(default, with = "opt_text")]
    pub focal_alpha: Option<FocalAlpha>,
    #[serde(default)]
    pub tune_threshold: bool,
    #[serde(default)]
    pub calibrate: bool,
    #[serde(default, with = "opt_text")]
    pub freeze: Option<FreezeSpec>,
    /// Absent in the states of runs from before the flag existed.
    #[serde(default, with = "as_text")]
    pub head_bias_init: HeadBiasInit,
    pub text_column: String,
    pub text_pair_column: Option<String>,
    pub label_column: String,
    pub header: Option<bool>,
    pub quoting: Option<bool>,
    pub labels: Option<PathBuf>,
    pub epochs: f64,
    pub max_steps: Option<u64>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub warmup_steps: Option<u64>,
    #[serde(with = "as_text")]
    pub schedule: ScheduleKind,
    pub max_grad_norm: f64,
    pub max_length: usize,
    /// `--long-text chunk`'s windows (None: truncate). Absent in the states of runs from before the flag existed.
    #[serde(default)]
    pub long_text: Option<ChunkSettings>,
    /// `--truncation-direction`: which end a truncated input loses.
    #[serde(default = "keep_first_tokens")]
    pub truncation_direction: Truncation,
    #[serde(default)]
    pub chunk_loss: ChunkLoss,
    /// `--augment`'s files, in order (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub augment: Vec<PathBuf>,
    #[serde(default = "unit_weight")]
    pub augment_weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment_max_share: Option<f64>,
    pub seed: u64,
    pub length_bucketing: bool,
    /// Runs from before the flag padded; packing changes only rounding.
    #[serde(default = "yes")]
    pub skip_padding: bool,
    pub eval_every: Option<u64>,
    pub save_every: Option<u64>,
    pub save_limit: usize,
    pub metric_for_best: String,
    pub greater_is_better: bool,
    pub early_stopping_patience: Option<usize>,
    pub logging_steps: u64,
    /// Per-part gradient norms, update ratios and clipped steps in the log
    /// (absent, and so on, in the states of runs from before the flag).
    #[serde(default = "diagnostics_default")]
    pub diagnostics: bool,
    /// Time every op (`--profile`); off in states from before the flag.
    #[serde(default)]
    pub profile: bool,
    pub resume_from: Option<PathBuf>,
    /// Absent in the states of runs from before the flag existed.
    #[serde(default)]
    pub overwrite: bool,
    pub device: DeviceChoice,
    pub precision: Precision,
}

fn keep_first_tokens() -> Truncation {
    Truncation::Right
}

fn unit_weight() -> f64 {
    1.0
}

/// `--threshold-min-positives` when not given.
pub const DEFAULT_THRESHOLD_MIN_POSITIVES: usize = 5;

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn default_sampler() -> SamplerKind {
    SamplerKind::Random
}

fn diagnostics_default() -> bool {
    true
}

impl TrainConfig {
    /// The loss kind the options name (class weights come from the data).
    pub fn loss_kind(&self) -> Result<LossKind> {
        LossKind::from_parts(self.loss, self.focal_gamma, self.focal_alpha.as_ref().map(|a| a.0.as_slice()))
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("--batch-size and --grad-accum must be at least 1".into());
        }
        if !(self.epochs > 0.0) && self.max_steps.is_none() {
            return bad(format!("--epochs must be positive (got {})", self.epochs));
        }
        if self.max_steps == Some(0) {
            return bad("--max-steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be positive and finite (got {})", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(format!("--warmup-ratio must be in [0, 1) (got {})", self.warmup_ratio));
        }
        // Written so NaN fails too: NaN compares false with everything.
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("--weight-decay must be a finite number ≥ 0 (got {})", self.weight_decay));
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return bad(format!("--max-grad-norm must be a finite number ≥ 0, 0 to turn clipping off (got {})", self.max_grad_norm));
        }
        if !self.epochs.is_finite() {
            return bad(format!("--epochs must be a finite number (got {})", self.epochs));
        }
        if self.focal_gamma.is_some_and(|g| !(g >= 0.0 && g.is_finite())) {
            return bad(format!("--focal-gamma must be a finite number ≥ 0 (got {})", self.focal_gamma.unwrap_or_default()));
        }
        if self.max_length < 2 {
            return bad(format!("--max-length must be at least 2, room for [CLS] and [SEP] (got {})", self.max_length));
        }
        if self.eval_every == Some(0) || self.save_every == Some(0) || self.logging_steps == 0 {
            return bad("--eval-every, --save-every and --logging-steps must be at least 1".into());
        }
        if self.heads.is_some() && (!self.train.as_os_str().is_empty() || self.eval.is_some()) {
            return bad("--heads names each head's train and eval files; do not also give --train or --eval".into());
        }
        if self.early_stopping_patience.is_some() && self.eval.is_none() {
            return bad("--early-stopping-patience needs --eval".into());
        }
        if self.label_separator.is_empty() {
            return bad("--label-separator must not be empty".into());
        }
        if self.tune_thresholds && (self.task != Task::MultiLabel || self.eval.is_none()) {
            return bad("--tune-thresholds needs --task multi-label and an --eval file to tune on".into());
        }
        if self.threshold_min_positives == 0 {
            return bad("--threshold-min-positives must be at least 1 (1 tunes every label alone)".into());
        }
        if self.heads.is_some() && self.head_bias_init != HeadBiasInit::Zero {
            return bad("--head-bias-init prior is for single-head runs; --heads initialises each head as transformers does".into());
        }
        let focal = matches!(self.loss_kind()?, LossKind::Focal { .. });
        let single = self.task == Task::Classification;
        match (&self.sampler, self.task) {
            (SamplerKind::Random, _) | (_, Task::Classification) | (SamplerKind::Weighted { .. }, Task::MultiLabel) => {}
            (SamplerKind::Undersample { .. }, Task::MultiLabel) => {
                return bad(crate::data::sampler::multi_label_undersampling(&self.sampler.text()));
            }
            _ => return bad(format!("--sampler {} needs --task classification or multi-label", self.sampler.text())),
        }
        if !(self.augment_weight.is_finite() && self.augment_weight >= 0.0) {
            return bad(format!("--augment-weight {}: use a finite number ≥ 0", self.augment_weight));
        }
        if let Some(share) = self.augment_max_share
            && !(share > 0.0 && share <= 1.0)
        {
            return bad(format!("--augment-max-share {share}: use a share above 0 and at most 1"));
        }
        if self.augment.is_empty() && (self.augment_weight != 1.0 || self.augment_max_share.is_some()) {
            return bad("--augment-weight and --augment-max-share need --augment FILE".into());
        }
        if !self.augment.is_empty() && self.heads.is_some() {
            return bad("--augment applies to single-task runs; --heads reads each head's own files".into());
        }
        if self.augment_max_share.is_some() && self.task == Task::TokenClassification {
            return bad("--augment-max-share counts examples per class: a sequence task's, not tags".into());
        }
        if self.epoch_length == Some(0) {
            return bad("--epoch-length must be at least 1".into());
        }
        if self.task == Task::Regression && (self.class_weights.is_some() || focal) {
            return bad("regression uses MSE: --class-weights and --loss focal do not apply".into());
        }
        if self.tune_threshold && (!single || self.eval.is_none()) {
            return bad("--tune-threshold needs --task classification with two labels and an --eval file to tune on".into());
        }
        if self.calibrate && (!single || self.eval.is_none()) {
            return bad("--calibrate needs --task classification and an --eval file to fit the temperature on".into());
        }
        if self.long_text.is_some() && self.task == Task::TokenClassification {
            return bad(crate::data::chunks::CHUNKING_IS_FOR_SEQUENCE_TASKS.into());
        }
        if self.long_text.is_some() && self.heads.is_some() {
            return bad("--long-text chunk applies to single-task runs; --heads truncates each head's texts".into());
        }
        if self.heads.is_some()
            && (self.class_weights.is_some() || focal || self.sampler != SamplerKind::Random || self.tune_threshold || self.calibrate)
        {
            return bad("--heads: class weights, focal loss, samplers, --tune-threshold and --calibrate apply to single-task runs".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(task: &str, loss: &str) -> TrainOptions {
        TrainOptions {
            model: Some("model".into()),
            train: Some("train.tsv".into()),
            output: Some("out".into()),
            task: Some(task.into()),
            loss: Some(loss.into()),
            ..TrainOptions::default()
        }
    }

    #[test]
    fn every_name_of_the_plain_loss_passes_and_focal_is_refused_for_regression() {
        // The plain loss has several names (`LossName::parse`); none of
        // them is focal, so regression must accept each.
        for loss in ["ce", "standard", "cross-entropy", "bce"] {
            let resolved = options("regression", loss).resolve();
            assert!(resolved.is_ok(), "--loss {loss}: {:?}", resolved.err());
        }
        let err = options("regression", "focal").resolve().unwrap_err().to_string();
        assert!(err.contains("regression uses MSE"), "{err}");
    }

    #[test]
    fn r16_structured_options_are_typed_once_and_saved_as_the_text_a_user_writes() {
        let mut o = options("classification", "focal");
        o.focal_alpha = Some("0.25".into());
        o.class_weights = Some("effective:0.99".into());
        o.freeze = Some("embeddings,layers:0-1".into());
        let config = o.resolve().unwrap();
        assert_eq!(config.loss_kind().unwrap(), LossKind::Focal { gamma: 2.0, alpha: Some(vec![0.25]) });
        assert_eq!(config.class_weights, Some(ClassWeightSpec::Effective { beta: 0.99 }));
        let saved = serde_json::to_value(&config).unwrap();
        for (key, text) in
            [("loss", "focal"), ("focal_alpha", "0.25"), ("class_weights", "effective:0.99"), ("freeze", "embeddings,layers:0-1")]
        {
            assert_eq!(saved[key], text, "{key}");
        }
        let back: TrainConfig = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(back, config);
        // A state from before these were typed, with none of them set, still reads.
        let mut old = saved;
        for key in ["loss", "focal_alpha", "class_weights", "freeze"] {
            old.as_object_mut().unwrap().remove(key);
        }
        old["freeze"] = serde_json::Value::Null;
        let back: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!((back.loss, back.focal_alpha, back.class_weights, back.freeze), (LossName::Standard, None, None, None));
        // A bad value is refused when the options resolve, naming the flag.
        let mut o = options("classification", "ce");
        o.freeze = Some("layers:x".into());
        assert!(o.resolve().unwrap_err().to_string().contains("--freeze `layers:x`"));
    }
}
