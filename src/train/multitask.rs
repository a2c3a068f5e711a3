//! Multi-task fine-tuning: one encoder, several named heads, each with its
//! own data file, label set, task and loss weight (`berth train --heads FILE`).
//! The model and its folder are `model::multitask`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::dataset::{ColumnChoice, DataSpec, EncodedDataset, epoch_batches};
use super::evaluate::evaluate;
use super::freeze::FreezeSpec;
use super::options::TrainConfig;
use super::trainer::TrainSummary;
use crate::autograd::Tape;
use crate::data::BerthTokenizer;
use crate::data::align::Alignment;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::metrics::evaluation::Evaluation;
use crate::model::checkpoint::TokenizerFiles;
use crate::model::multitask::{HeadInfo, MultiTaskModel, head_param_name};
use crate::model::params::{ParamStore, expected_parameters, init_parameter};
use crate::model::task::Task;
use crate::model::{ForwardMode, HeadKind, LoadOptions, ProblemType, load_model};
use crate::optim::{AdamW, AdamWConfig, Schedule, clip_grad_norm};
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
    pub head: Vec<HeadOptions>,
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
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub text_column: Option<String>,
    #[serde(default)]
    pub text_pair_column: Option<String>,
    #[serde(default)]
    pub label_column: Option<String>,
    #[serde(default)]
    pub header: Option<bool>,
    #[serde(default)]
    pub quoting: Option<bool>,
    #[serde(default)]
    pub labels: Option<PathBuf>,
    #[serde(default)]
    pub label_separator: Option<String>,
    #[serde(default)]
    pub tag_column: Option<usize>,
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

/// `berth train --heads FILE`: trains every head of the file on one encoder.
/// Each batch belongs to one head; its loss, times the head's weight, updates
/// the encoder and that head. Every head with an eval file is evaluated at the
/// end of each epoch. (Checkpoints during the run and --resume-from are for
/// single-task runs only.)
pub fn train_multitask(config: &TrainConfig, heads_path: &Path) -> Result<TrainSummary> {
    let start = Instant::now();
    if config.resume_from.is_some() || config.save_every.is_some() || config.grad_accum != 1 {
        return Err(Error::InvalidArgument(
            "--heads runs do not take --resume-from, --save-every or --grad-accum (yet); run them without".into(),
        ));
    }
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
    let (encoder, _) = load_model(&config.model, &load)?;
    let tokenizer_files = TokenizerFiles::read(&config.model)?;
    let tokenizer = BerthTokenizer::from_dir(
        &config.model,
        super::trainer::effective_max_length(config.max_length, encoder.config.max_position_embeddings),
    )?;
    let mut store = ParamStore::default();
    for (name, t) in encoder.params.iter().filter(|(n, _)| n.starts_with("bert.")) {
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
        let text_column = opts.text_column.clone().unwrap_or_else(|| "text".into());
        let label_column = opts.label_column.clone().unwrap_or_else(|| "label".into());
        let separator = opts.label_separator.clone().unwrap_or_else(|| ",".into());
        let alignment = opts.alignment.clone().unwrap_or_else(|| "first".into());
        let spec = DataSpec {
            task,
            columns: ColumnChoice {
                format: opts.format.as_deref(),
                text: &text_column,
                text_pair: opts.text_pair_column.as_deref(),
                label: &label_column,
                header: opts.header,
                quoting: opts.quoting,
            },
            tag_column: opts.tag_column,
            label_separator: &separator,
            alignment: Alignment::parse(&alignment).map_err(|e| bad(e.to_string()))?,
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
        // The head's own classifier, initialised as HF does, one seed per head.
        for (name, shape) in expected_parameters(&encoder.config, task.head(), labels.len()) {
            if name.starts_with("classifier.") {
                let seed = mix64(config.seed ^ (h as u64 + 1));
                let t = init_parameter(&name, &shape, encoder.config.initializer_range, seed, DType::F32);
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
        Some(spec) => FreezeSpec::parse(spec)?.trainable(model.store.names(), model.config.num_hidden_layers)?,
        None => vec![true; model.store.len()],
    };
    let adam = AdamWConfig { weight_decay: config.weight_decay, ..AdamWConfig::default() };
    let mut optimizer = AdamW::new(adam, model.store.names(), model.store.tensors(), &trainable);
    let lengths: Vec<Vec<usize>> = data.iter().map(|d| d.train.encodings.iter().map(|e| e.ids.len()).collect()).collect();
    let steps_per_epoch: u64 = lengths.iter().map(|l| l.len().div_ceil(config.batch_size) as u64).sum();
    let total_steps = config.max_steps.unwrap_or_else(|| (config.epochs * steps_per_epoch as f64).ceil() as u64).max(1);
    let warmup_steps = config.warmup_steps.unwrap_or_else(|| (config.warmup_ratio * total_steps as f64).ceil() as u64);
    let schedule = Schedule { kind: config.schedule, peak_lr: config.lr, warmup_steps, total_steps };
    std::fs::create_dir_all(&config.output).map_err(|e| Error::io(&config.output, e))?;
    let mut log = std::fs::File::create(config.output.join("metrics.jsonl")).map_err(|e| Error::io(&config.output, e))?;
    let trained: usize = model.store.tensors().iter().zip(&trainable).filter(|(_, t)| **t).map(|(p, _)| p.numel()).sum();
    eprintln!(
        "multi-task: {} heads ({}), mixing {mixing}; {total_steps} optimizer steps ({steps_per_epoch} per epoch), warmup {warmup_steps}, {trained} of {} parameters trained",
        model.heads.len(),
        model
            .heads
            .iter()
            .zip(&data)
            .map(|(h, d)| format!("{}: {} {} rows", h.name, h.task.name(), d.train.len()))
            .collect::<Vec<_>>()
            .join(", "),
        model.store.count()
    );

    let pad_id = tokenizer.pad_id();
    let (mut step, mut epoch, mut real_tokens) = (0u64, 0u64, 0u64);
    let mut window_loss = vec![(0.0f64, 0usize); model.heads.len()];
    let mut last_evals: Vec<Option<Evaluation>> = (0..model.heads.len()).map(|_| None).collect();
    use std::io::Write;
    let mut write_log = |value: serde_json::Value| -> Result<()> {
        writeln!(log, "{value}").map_err(|e| Error::io(config.output.join("metrics.jsonl"), e))
    };
    'epochs: while step < total_steps {
        let per_head: Vec<Vec<Vec<usize>>> = lengths
            .iter()
            .enumerate()
            .map(|(h, l)| epoch_batches(l, config.batch_size, mix64(config.seed ^ h as u64), epoch, config.length_bucketing))
            .collect();
        for (h, indices) in epoch_plan(&per_head, &mixing, config.seed, epoch) {
            let (batch, targets) = data[h].train.batch(&indices, pad_id);
            let mut grads: Vec<Option<Tensor>> = vec![None; model.store.len()];
            let loss_value = {
                let (head_model, map) = model.head_model(h)?;
                let cache = head_model.weight_cache()?;
                let mut tape = Tape::new();
                let out =
                    head_model.forward_cached(&mut tape, &batch, ForwardMode::train(mix64(config.seed ^ mix64(step + 1))), Some(&cache))?;
                let loss = head_model.loss(&mut tape, out.logits, &targets, None)?;
                let value = tape.value(loss).to_f64_vec()[0];
                if !value.is_finite() {
                    return Err(Error::Numerical(format!(
                        "the loss of head `{}` is {value} at step {}; training stopped without saving a model. A smaller --lr usually helps",
                        model.heads[h].name,
                        step + 1
                    )));
                }
                let seed = Tensor::full(&[1], model.heads[h].loss_weight, DType::F32);
                let mut g = tape.backward_with(loss, seed)?;
                for (i, v) in out.params.iter().enumerate() {
                    if trainable[map[i]] {
                        grads[map[i]] = g.take(*v);
                    }
                }
                value
            };
            // The head model and its cache are dropped: the store's tensors are unshared again.
            clip_grad_norm(&mut grads, config.max_grad_norm)
                .map_err(|_| Error::Numerical(format!("the gradient norm is not finite at step {}", step + 1)))?;
            let lr = schedule.lr(step);
            optimizer.update(model.store.tensors_mut(), &grads, lr)?;
            step += 1;
            real_tokens += batch.real_tokens() as u64;
            window_loss[h].0 += loss_value;
            window_loss[h].1 += 1;
            if step % config.logging_steps == 0 || step == total_steps {
                let mut entry = json!({"step": step, "learning_rate": lr, "tokens_per_s": real_tokens as f64 / start.elapsed().as_secs_f64().max(1e-9)});
                for (info, (sum, n)) in model.heads.iter().zip(&mut window_loss) {
                    if *n > 0 {
                        entry[format!("loss_{}", info.name)] = json!(*sum / *n as f64);
                    }
                    (*sum, *n) = (0.0, 0);
                }
                write_log(entry)?;
            }
            if step >= total_steps {
                break;
            }
        }
        epoch += 1;
        for (h, d) in data.iter().enumerate() {
            if let Some(eval) = &d.eval {
                let (head_model, _) = model.head_model(h)?;
                let e = evaluate(&head_model, eval, config.batch_size.max(32), pad_id)?;
                let mut entry = json!({"step": step, "epoch": epoch, "head": model.heads[h].name});
                for (key, v) in e.log_fields() {
                    entry[key] = json!(v);
                }
                write_log(entry)?;
                eprintln!(
                    "step {step}: head {}: {} {:.4}",
                    model.heads[h].name,
                    model.heads[h].task.default_metric(),
                    e.metric(model.heads[h].task.default_metric())
                );
                last_evals[h] = Some(e);
            }
        }
        if step >= total_steps {
            break 'epochs;
        }
    }
    model.save(&config.output, &tokenizer_files)?;
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
        steps: step,
        seconds: start.elapsed().as_secs_f64(),
        real_tokens,
        final_eval: None,
        best_step: None,
        output: config.output.clone(),
    })
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
