//! Multi-task fine-tuning: one encoder, several named heads, each with its
//! own data file, label set, task and loss weight (`berth train --heads FILE`).
//! The model and its folder are `model::multitask`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::dataset::{ColumnChoice, DataSpec, EncodedDataset, epoch_batches};
use super::evaluate::evaluate_with;
use super::option_groups::{DataColumnOptions, take_group};
use super::options::TrainConfig;
use super::run_start::{StepPlan, start_run};
use super::state::{RunIdentity, TrainingState, check_same_run, read_state, write_checkpoint_with, write_state};
use super::step_loop::{EvalContext, Job, MicroBatch, MicroOutcome, add_gradients, epoch_float, run_steps, say};
use super::trainer::TrainSummary;
use crate::autograd::Tape;
use crate::backend::open_device;
use crate::data::BerthTokenizer;
use crate::data::align::Alignment;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::evaluation::Evaluation;
use crate::model::checkpoint::TokenizerFiles;
use crate::model::multitask::{HeadInfo, MultiTaskModel, head_param_name, is_per_head};
use crate::model::params::{ParamStore, expected_parameters, init_parameter};
use crate::model::task::Task;
use crate::model::{Family, ForwardMode, HeadKind, LoadOptions, ProblemType, load_model};
use crate::optim::AdamW;
use crate::rng::{SeqRng, mix64};
use crate::tensor::{DType, Tensor};

/// The `--heads` TOML file: how batches of the heads are mixed, and the heads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeadsFile {
    /// `alternate` (round robin over the heads, one batch each) or
    /// `proportional` (a seeded shuffle of every head's batches, so each head
    /// is drawn in proportion to its data). Default alternate.
    #[serde(default)]
    pub mixing: Option<String>,
    #[serde(deserialize_with = "head_tables")]
    pub head: Vec<HeadOptions>,
}

/// Each `[[head]]` table, split between the shared data-column group and the
/// head's own keys (serde's `flatten` would drop `deny_unknown_fields`).
fn head_tables<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<HeadOptions>, D::Error> {
    use serde::de::Error as _;
    let tables = Vec::<toml::Table>::deserialize(d)?;
    let read = |mut table: toml::Table| -> std::result::Result<HeadOptions, toml::de::Error> {
        let columns = take_group::<DataColumnOptions>(&mut table)?;
        let own: HeadOptions = toml::Value::Table(table).try_into()?;
        Ok(HeadOptions { columns, ..own })
    };
    let numbered = |(i, table)| read(table).map_err(|e| D::Error::custom(format!("[[head]] number {}: {e}", i + 1)));
    tables.into_iter().enumerate().map(numbered).collect()
}

/// One `[[head]]` of the heads file. Paths are relative to the heads file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeadOptions {
    pub name: String,
    #[serde(default)]
    pub task: Option<String>,
    pub train: PathBuf,
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// The data file's format and columns, the keys `berth train` takes as flags.
    #[serde(skip)]
    pub columns: DataColumnOptions,
    #[serde(default)]
    pub labels: Option<PathBuf>,
    #[serde(default)]
    pub alignment: Option<String>,
    /// Multiplies this head's loss (default 1).
    #[serde(default)]
    pub loss_weight: Option<f64>,
}

/// One head's data, read and encoded.
struct HeadData {
    train: EncodedDataset,
    eval: Option<EncodedDataset>,
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

/// The order of one epoch's (head, batch) pairs.
fn epoch_plan(per_head: &[Vec<Vec<usize>>], mixing: &str, seed: u64, epoch: u64) -> Vec<(usize, Vec<usize>)> {
    let mut plan = Vec::new();
    if mixing == "proportional" {
        for (h, batches) in per_head.iter().enumerate() {
            plan.extend(batches.iter().map(|b| (h, b.clone())));
        }
        SeqRng::new(mix64(seed ^ mix64(epoch ^ 0x6d75_6c74))).shuffle(&mut plan);
    } else {
        let longest = per_head.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for (h, batches) in per_head.iter().enumerate() {
                if let Some(b) = batches.get(i) {
                    plan.push((h, b.clone()));
                }
            }
        }
    }
    plan
}

/// `berth train --heads FILE`: trains every head of the file on one encoder,
/// through the same loop as a single-task run (so with `--device`,
/// `--grad-accum`, `--save-every` and `--resume-from`). Each micro-batch
/// belongs to one head; its loss, times the head's weight, updates the
/// encoder and that head. Every head with an eval file is evaluated at the
/// end of each epoch (or every `--eval-every` steps).
pub fn train_multitask(config: &TrainConfig, heads_path: &Path) -> Result<TrainSummary> {
    let start = Instant::now();
    let (device, precision) = open_device(config.device, config.precision)?;
    let text = std::fs::read_to_string(heads_path).map_err(|e| Error::io(heads_path, e))?;
    let file: HeadsFile = toml::from_str(&text).map_err(|e| Error::Config { path: heads_path.into(), message: e.to_string() })?;
    let mixing = file.mixing.clone().unwrap_or_else(|| "alternate".into());
    if !["alternate", "proportional"].contains(&mixing.as_str()) {
        return Err(Error::Config { path: heads_path.into(), message: format!("mixing `{mixing}`: use alternate or proportional") });
    }
    if file.head.is_empty() {
        return Err(Error::Config { path: heads_path.into(), message: "the file names no [[head]]".into() });
    }
    let base = heads_path.parent().unwrap_or(Path::new("."));

    // The shared encoder (with a pooler, initialised if the checkpoint has none).
    let load = LoadOptions {
        head: Some(HeadKind::SequenceClassification),
        labels: Some(vec!["0".into(), "1".into()]),
        problem_type: Some(ProblemType::SingleLabel),
        seed: config.seed,
        dtype: DType::F32,
        require_trained_head: false,
    };
    let (encoder, load_report) = load_model(&config.model, &load)?;
    let tokenizer_files = TokenizerFiles::read(&config.model)?;
    let tokenizer = BerthTokenizer::from_dir(
        &config.model,
        super::trainer::effective_max_length(config.max_length, encoder.config.max_sequence_length()),
    )?;
    tokenizer.check_vocab(encoder.config.vocab_size)?;
    let mut store = ParamStore::default();
    let family = encoder.config.family;
    for (name, t) in encoder.params.iter().filter(|(n, _)| !is_per_head(family, n)) {
        store.push(name.to_owned(), t.clone());
    }

    let mut heads = Vec::new();
    let mut data = Vec::new();
    for (h, opts) in file.head.iter().enumerate() {
        let bad = |m: String| Error::Config { path: heads_path.into(), message: format!("head `{}`: {m}", opts.name) };
        if opts.name.is_empty() || !opts.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(bad("a head name uses letters, digits, `_` and `-`".into()));
        }
        if heads.iter().any(|x: &HeadInfo| x.name == opts.name) {
            return Err(bad("the name is used twice".into()));
        }
        let task = Task::parse(opts.task.as_deref().unwrap_or("classification")).map_err(|e| bad(e.to_string()))?;
        let loss_weight = opts.loss_weight.unwrap_or(1.0);
        if !(loss_weight > 0.0 && loss_weight.is_finite()) {
            return Err(bad(format!("loss-weight must be positive, found {loss_weight}")));
        }
        let columns = &opts.columns;
        let text_column = columns.text_column.clone().unwrap_or_else(|| "text".into());
        let label_column = columns.label_column.clone().unwrap_or_else(|| "label".into());
        let separator = columns.label_separator.clone().unwrap_or_else(|| ",".into());
        let alignment = opts.alignment.clone().unwrap_or_else(|| "first".into());
        let spec = DataSpec {
            task,
            columns: ColumnChoice {
                format: columns.format.as_deref(),
                text: &text_column,
                text_pair: columns.text_pair_column.as_deref(),
                label: &label_column,
                header: columns.header,
                quoting: columns.quoting,
            },
            tag_column: columns.tag_column,
            label_separator: &separator,
            alignment: Alignment::parse(&alignment).map_err(|e| bad(e.to_string()))?,
            long_text: None,
        };
        let train_path = resolve(base, &opts.train);
        let raw = spec.read(&train_path)?;
        let labels = spec.label_set(&raw, opts.labels.as_ref().map(|p| resolve(base, p)).as_deref(), &train_path)?;
        let train = spec.encode(&train_path, &raw, &labels, &tokenizer)?;
        let eval = match &opts.eval {
            Some(p) => {
                let p = resolve(base, p);
                Some(spec.encode(&p, &spec.read(&p)?, &labels, &tokenizer)?)
            }
            None => None,
        };
        // The head's own classifier (and the dense layer before it, where the
        // family's head has one), initialised as HF does, one seed per head.
        // ModernBERT's head.dense and head.norm come pretrained with the
        // masked-LM checkpoint, and each head starts from them, as
        // transformers' task classes load them.
        for (name, shape) in expected_parameters(&encoder.config, task.head(), labels.len()) {
            if is_per_head(family, &name) {
                let pretrained =
                    (family == Family::ModernBert && name.starts_with("bert.pooler.") && !load_report.initialized.contains(&name))
                        .then(|| encoder.params.get(&name).cloned())
                        .flatten();
                let t = pretrained.unwrap_or_else(|| {
                    let seed = mix64(config.seed ^ (h as u64 + 1));
                    init_parameter(&name, &shape, encoder.config.initializer_range, seed, DType::F32)
                });
                store.push(head_param_name(&opts.name, &name), t);
            }
        }
        heads.push(HeadInfo {
            name: opts.name.clone(),
            task,
            labels: labels.names().to_vec(),
            loss_weight,
            alignment: (task == Task::TokenClassification).then_some(alignment),
        });
        data.push(HeadData { train, eval });
    }
    let mut model = MultiTaskModel { config: encoder.config.clone(), heads, mixing: mixing.clone(), store };
    drop(encoder);

    let trainable = match &config.freeze {
        Some(spec) => spec.trainable(model.store.names(), model.config.num_hidden_layers, model.config.family)?,
        None => vec![true; model.store.len()],
    };

    // Resume: the checkpoint's weights replace the fresh ones, name by name.
    let mut files: Vec<PathBuf> = vec![heads_path.to_path_buf()];
    files.extend(file.head.iter().map(|h| resolve(base, &h.train)));
    let identity = RunIdentity::with_files(config, &files.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let labels: Vec<String> = model.heads.iter().flat_map(|h| h.labels.iter().map(move |l| format!("{}:{l}", h.name))).collect();
    let resume = match &config.resume_from {
        Some(dir) => Some((dir.clone(), read_state(dir)?)),
        None => None,
    };
    if let Some((dir, state)) = &resume {
        check_same_run(dir, state, config, &identity)?;
        if state.labels != labels {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                message: format!("the checkpoint was trained for head labels {:?}, this run has {:?}", state.labels, labels),
            });
        }
        restore_weights(&mut model.store, &MultiTaskModel::load(dir)?.store, dir)?;
    }

    let batches_per_epoch: u64 = data.iter().map(|d| d.train.len().div_ceil(config.batch_size) as u64).sum();
    let plan = StepPlan::new(config, batches_per_epoch);
    let mut run = start_run(config, &model.store, &trainable, &plan, labels, identity, resume.as_ref(), (&device, precision))?;
    let trained: usize = model.store.tensors().iter().zip(&trainable).filter(|(_, t)| **t).map(|(p, _)| p.numel()).sum();
    eprintln!(
        "multi-task: {} heads ({}), mixing {mixing}; {} optimizer steps ({} per epoch, {} examples per step), warmup {}, {trained} of {} parameters trained",
        model.heads.len(),
        model
            .heads
            .iter()
            .zip(&data)
            .map(|(h, d)| format!("{}: {} {} rows", h.name, h.task.name(), d.train.len()))
            .collect::<Vec<_>>()
            .join(", "),
        plan.total_steps,
        plan.steps_per_epoch,
        config.batch_size * config.grad_accum,
        plan.warmup_steps,
        model.store.count()
    );

    let heads = model.heads.len();
    let mut job = MultiJob {
        config,
        lengths: data.iter().map(|d| d.train.encodings.iter().map(|e| e.ids.len()).collect()).collect(),
        model,
        data,
        mixing,
        trainable,
        pad_id: tokenizer.pad_id(),
        tokenizer_files: &tokenizer_files,
        last_evals: (0..heads).map(|_| None).collect(),
    };
    run_steps(&mut job, &mut run)?;
    let MultiJob { model, last_evals, .. } = job;
    model.save(&config.output, &tokenizer_files)?;
    write_state(&config.output, &run.state)?;
    let mut metrics = serde_json::Map::new();
    for (info, e) in model.heads.iter().zip(&last_evals) {
        if let Some(e) = e {
            println!("== head {} ({})\n{}", info.name, info.task.name(), e.to_text());
            metrics.insert(info.name.clone(), e.to_json());
        }
    }
    if !metrics.is_empty() {
        write_atomic(&config.output.join("metrics.json"), serde_json::to_string_pretty(&metrics).expect("json").as_bytes())?;
    }
    Ok(TrainSummary {
        steps: run.state.step,
        seconds: start.elapsed().as_secs_f64(),
        real_tokens: run.state.real_tokens,
        final_eval: None,
        best_step: None,
        output: config.output.clone(),
    })
}

/// Copies each tensor of `saved` (a checkpoint's store) into `store` by name;
/// a missing or mis-shaped tensor is an error naming the checkpoint.
fn restore_weights(store: &mut ParamStore, saved: &ParamStore, dir: &Path) -> Result<()> {
    let names: Vec<String> = store.names().to_vec();
    for (i, name) in names.iter().enumerate() {
        let found = saved.position(name).ok().map(|j| &saved.tensors()[j]);
        let current = &store.tensors()[i];
        match found {
            Some(t) if t.shape() == current.shape() => {
                let t = t.to_dtype(current.dtype());
                store.tensors_mut()[i] = t;
            }
            _ => {
                return Err(Error::Checkpoint {
                    path: dir.join("model.safetensors"),
                    message: format!("no tensor `{name}` of shape {:?}: not a checkpoint of this heads file", current.shape()),
                });
            }
        }
    }
    Ok(())
}

/// A multi-task run, as the loop sees it: the heads' batches mixed into one
/// plan per epoch, each micro-batch through its head's model over the
/// shared store, every head with eval data evaluated.
struct MultiJob<'a> {
    config: &'a TrainConfig,
    model: MultiTaskModel,
    data: Vec<HeadData>,
    lengths: Vec<Vec<usize>>,
    mixing: String,
    trainable: Vec<bool>,
    pad_id: u32,
    tokenizer_files: &'a TokenizerFiles,
    last_evals: Vec<Option<Evaluation>>,
}

impl Job for MultiJob<'_> {
    /// Each micro-batch builds its head's model (and, on the CPU, its
    /// transposed weights) over the store: nothing is kept across them.
    type StepCache = ();

    fn store(&self) -> &ParamStore {
        &self.model.store
    }

    fn store_mut(&mut self) -> &mut ParamStore {
        &mut self.model.store
    }

    fn epoch_plan(&self, epoch: u64) -> Vec<MicroBatch> {
        let c = self.config;
        let per_head: Vec<Vec<Vec<usize>>> = self
            .lengths
            .iter()
            .enumerate()
            .map(|(h, l)| epoch_batches(l, c.batch_size, mix64(c.seed ^ h as u64), epoch, c.length_bucketing))
            .collect();
        epoch_plan(&per_head, &self.mixing, c.seed, epoch).into_iter().map(|(head, rows)| MicroBatch { head, rows }).collect()
    }

    fn step_cache(&self, _: bool) -> Result<()> {
        Ok(())
    }

    fn micro_batch(
        &self,
        micro: &MicroBatch,
        device_params: Option<&[Tensor]>,
        _: &(),
        mode: ForwardMode,
        grad_scale: f64,
        grads: &mut [Option<Tensor>],
    ) -> Result<MicroOutcome> {
        let h = micro.head;
        let (head_model, map) = self.model.head_model(h)?;
        let (batch, targets) = self.data[h].train.batch(&micro.rows, self.pad_id);
        let mut tape = Tape::new();
        if self.config.profile {
            tape.enable_profile();
        }
        let out = match device_params {
            Some(params) => {
                let mapped: Vec<Tensor> = map.iter().map(|&j| params[j].clone()).collect();
                head_model.forward_on(&mut tape, &mapped, &batch, mode)?
            }
            None => {
                let cache = head_model.weight_cache_for(self.config.precision)?;
                head_model.forward_cached(&mut tape, &batch, mode, Some(&cache))?
            }
        };
        let loss = head_model.loss(&mut tape, out.logits, &targets, None)?;
        let value = tape.value(loss).to_f64_vec()[0];
        if !value.is_finite() {
            return Ok(MicroOutcome { loss: value, real_tokens: 0, profile: tape.profile().cloned() });
        }
        let seed = Tensor::full(&[1], self.model.heads[h].loss_weight * grad_scale, head_model.dtype());
        let mut g = tape.backward_with(loss, seed)?;
        add_gradients(grads, map.iter().copied(), |k| if self.trainable[map[k]] { g.take(out.params[k]) } else { None })?;
        // The head model is dropped here: the store's tensors are unshared again before the update.
        Ok(MicroOutcome { loss: value, real_tokens: batch.real_tokens(), profile: tape.profile().cloned() })
    }

    fn loss_key(&self, head: usize) -> String {
        format!("loss_{}", self.model.heads[head].name)
    }

    fn head_name(&self, head: usize) -> Option<&str> {
        self.model.heads.get(head).map(|h| h.name.as_str())
    }

    fn loss_weight(&self, head: usize) -> f64 {
        self.model.heads.get(head).map_or(1.0, |h| h.loss_weight)
    }

    fn evaluate(&mut self, ctx: &mut EvalContext) -> Result<bool> {
        let batch_size = self.config.batch_size.max(32);
        for (h, d) in self.data.iter().enumerate() {
            let Some(eval) = &d.eval else { continue };
            let (head_model, map) = self.model.head_model(h)?;
            let mapped: Option<Vec<Tensor>> = ctx.device_params.map(|p| map.iter().map(|&j| p[j].clone()).collect());
            let e = evaluate_with(&head_model, mapped.as_deref(), eval, batch_size, self.pad_id, None)?;
            let info = &self.model.heads[h];
            let mut entry = json!({"step": ctx.state.step, "epoch": epoch_float(ctx.state, ctx.batches_in_epoch), "head": info.name});
            for (key, v) in e.log_fields() {
                entry[key] = json!(v);
            }
            ctx.log.write(entry)?;
            say(
                ctx.bar,
                format!(
                    "step {}: head {}: {} {:.4}",
                    ctx.state.step,
                    info.name,
                    info.task.default_metric(),
                    e.metric(info.task.default_metric())
                ),
            );
            self.last_evals[h] = Some(e);
        }
        Ok(false)
    }

    fn write_checkpoint(&self, dir: &Path, optimizer: &AdamW, state: &TrainingState) -> Result<()> {
        write_checkpoint_with(dir, &self.model.store, optimizer, state, |tmp| self.model.save(tmp, self.tokenizer_files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_interleaves_and_proportional_keeps_every_batch() {
        let per_head = vec![vec![vec![0], vec![1], vec![2]], vec![vec![10]]];
        let alt: Vec<usize> = epoch_plan(&per_head, "alternate", 1, 0).iter().map(|(h, _)| *h).collect();
        assert_eq!(alt, [0, 1, 0, 0]);
        let mut prop = epoch_plan(&per_head, "proportional", 1, 0);
        assert_eq!(prop.len(), 4);
        prop.sort();
        assert_eq!(prop, [(0, vec![0]), (0, vec![1]), (0, vec![2]), (1, vec![10])]);
        assert_eq!(epoch_plan(&per_head, "proportional", 1, 3), epoch_plan(&per_head, "proportional", 1, 3), "seeded");
    }
}
