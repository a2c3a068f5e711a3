//! `berth predict`: JSON lines out, one per input line.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::input::read_lines;
use crate::data::conll::read_word_lines;
use crate::error::{Error, Result};
use crate::infer::Predictor;
use crate::infer::explain::{check_explainable, explain_document, explain_entities, explain_text, target_index};
use crate::infer::predictor::WordPrediction;
use crate::model::explain::{Baseline, ExplainMethod, ExplainOptions, IntegrationRule};
use crate::model::multitask::MultiTaskModel;
use crate::model::settings::max_length_for;
use crate::model::task::Task;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model folder: config.json, model.safetensors and tokenizer files.
    #[arg(long)]
    pub model: PathBuf,
    /// Input file: one example per line, each line giving one output row; a
    /// TAB separates text and text pair. A blank line is an error naming it.
    #[arg(long)]
    pub input: PathBuf,
    /// Token models: each input line is one sentence of words separated by
    /// spaces; the output is `{"words", "tags", "entities"}` per line.
    #[arg(long)]
    pub words: bool,
    /// Multi-task models: the head to use (default: every head, each line
    /// then maps head names to their predictions).
    #[arg(long)]
    pub head: Option<String>,
    /// Output file for JSON lines (standard output when omitted).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per example after truncation (longest-first for pairs)
    /// (default: as the model was trained, else 128).
    #[arg(long)]
    pub max_length: Option<usize>,
    #[command(flatten)]
    pub device: super::DeviceArgs,
    #[command(flatten)]
    pub long_text: crate::train::long_text::LongTextArgs,
    #[command(flatten)]
    pub explain: ExplainArgs,
}

/// `--explain` and its settings: token attributions added to each line's output.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Add each input's token attributions: integrated gradients (`ig`) or
    /// gradient × input, over the word embeddings, on the CPU.
    #[arg(long, value_enum)]
    pub explain: Option<ExplainMethod>,
    /// Integration steps of `ig` (more steps shrink the completeness gap).
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// The path's start: [PAD]'s embedding or zeros for every word piece (special tokens stay).
    #[arg(long, value_enum, default_value = "pad")]
    pub baseline: Baseline,
    /// How the path integral is approximated (gauss-legendre is captum's default).
    #[arg(long, value_enum, default_value = "gauss-legendre")]
    pub ig_rule: IntegrationRule,
    /// The label whose logit is explained (default: the predicted one).
    #[arg(long)]
    pub target: Option<String>,
    /// Interpolated copies of an input per forward and backward pass.
    #[arg(long, default_value_t = 16)]
    pub step_batch: usize,
}

/// The input file, read once for every head: sentences of words, or (text, pair) lines.
enum Inputs {
    Words(Vec<Vec<String>>),
    Lines(Vec<(String, Option<String>)>),
}

pub fn run(args: PredictArgs) -> Result<()> {
    // Read the input first: a bad line is reported before a model is loaded.
    let inputs = if args.words { Inputs::Words(read_word_lines(&args.input)?) } else { Inputs::Lines(read_lines(&args.input)?) };
    let n_inputs = match &inputs {
        Inputs::Words(s) => s.len(),
        Inputs::Lines(l) => l.len(),
    };
    if args.explain.explain.is_some() {
        if args.explain.target.is_some() && args.head.is_none() && MultiTaskModel::is_multitask(&args.model) {
            return Err(Error::InvalidArgument("--target names one head's label: give --head too (this is a multi-task model)".into()));
        }
        if args.explain.steps == 0 {
            return Err(Error::InvalidArgument("--steps 0: integrated gradients needs at least one step".into()));
        }
        if args.explain.step_batch == 0 {
            return Err(Error::InvalidArgument("--step-batch 0: a pass needs at least one sequence".into()));
        }
    }
    let (device, precision) = args.device.open()?;
    // (name, predictor): one unnamed predictor, or a multi-task model's heads.
    let mut predictors: Vec<(Option<String>, Predictor)> = Vec::new();
    let (max_length, source) = max_length_for(&args.model, args.max_length);
    eprintln!("max length: {max_length} ({source})");
    if MultiTaskModel::is_multitask(&args.model) {
        let heads: Vec<(String, Task)> = match &args.head {
            Some(h) => vec![(h.clone(), Task::Classification)],
            None => MultiTaskModel::load(&args.model)?.heads.iter().map(|h| (h.name.clone(), h.task)).collect(),
        };
        if args.long_text.long_text.is_some() {
            return Err(Error::InvalidArgument("--long-text: multi-task models truncate long inputs for now".into()));
        }
        for (name, task) in heads {
            // --words without --head reports the token heads only.
            if args.words && args.head.is_none() && task != Task::TokenClassification {
                continue;
            }
            let p = Predictor::load_head(&args.model, &name, max_length, device.as_ref(), precision)?;
            predictors.push((args.head.is_none().then_some(name), p));
        }
        if predictors.is_empty() {
            return Err(Error::InvalidArgument("--words needs a token-classification head, and this model has none".into()));
        }
    } else {
        if args.head.is_some() {
            return Err(Error::InvalidArgument(format!("--head: {} is a single-task model", args.model.display())));
        }
        let (mut predictor, report) = Predictor::load_on(&args.model, max_length, device.as_ref(), precision)?;
        for note in &report.notes {
            eprintln!("note: {note}");
        }
        let (long_text, source) = args.long_text.resolve(predictor.settings.long_text)?;
        if long_text.is_some() && args.words {
            return Err(Error::InvalidArgument(crate::data::chunks::CHUNKING_IS_FOR_SEQUENCE_TASKS.into()));
        }
        predictor.set_long_text(long_text)?;
        eprintln!("long text: {} ({source})", crate::train::long_text::describe(long_text));
        let (direction, source) = args.long_text.direction(predictor.settings.truncation_direction, long_text.is_some())?;
        predictor.tokenizer.set_truncation_direction(direction)?;
        if long_text.is_none() {
            eprintln!("truncation direction: {} ({source})", crate::train::long_text::direction_name(direction));
        }
        predictors.push((None, predictor));
    }
    if let Some((_, p)) = predictors.first() {
        eprintln!("engine: {}", p.device_name());
    }
    // Every predictor's outputs, one JSON value per input line.
    let mut columns: Vec<(Option<String>, Vec<serde_json::Value>)> = Vec::new();
    for (name, predictor) in &predictors {
        let values: Vec<serde_json::Value> = match &inputs {
            Inputs::Words(sentences) => {
                let predictions = predictor.predict_words(sentences, args.batch_size)?;
                let mut values: Vec<serde_json::Value> = predictions.iter().map(|p| serde_json::to_value(p).expect("serialise")).collect();
                if let Some(method) = args.explain.explain {
                    explain_sentences(predictor, sentences, &predictions, method, &args.explain, &mut values)?;
                }
                values
            }
            Inputs::Lines(examples) => {
                let predictions = predictor.predict(examples, args.batch_size)?;
                let capped = predictions.iter().filter(|p| p.windows_dropped.is_some()).count();
                if let (Some(limit), true) = (predictor.long_text().and_then(|c| c.max_chunks), capped > 0) {
                    eprintln!(
                        "note: {capped} of {} inputs had more than --max-chunks {limit} windows; the rest of each was not read",
                        examples.len()
                    );
                }
                let mut values: Vec<serde_json::Value> = predictions.iter().map(|p| serde_json::to_value(p).expect("serialise")).collect();
                if let Some(method) = args.explain.explain {
                    explain_lines(predictor, examples, method, &args.explain, &mut values)?;
                }
                values
            }
        };
        columns.push((name.clone(), values));
    }
    let mut text = String::new();
    for i in 0..n_inputs {
        let line = match &columns[..] {
            [(None, values)] => values[i].clone(),
            _ => serde_json::Value::Object(columns.iter().map(|(n, v)| (n.clone().unwrap_or_default(), v[i].clone())).collect()),
        };
        text.push_str(&line.to_string());
        text.push('\n');
    }
    match &args.output {
        Some(path) => crate::io::write_atomic(path, text.as_bytes()),
        None => std::io::stdout().lock().write_all(text.as_bytes()).map_err(|e| Error::io("<stdout>", e)),
    }
}

/// The explanation settings of the flags; `target` as resolved against the model.
fn explain_options(method: ExplainMethod, args: &ExplainArgs, target: Option<usize>) -> ExplainOptions {
    ExplainOptions {
        method,
        steps: if method == ExplainMethod::Ig { args.steps } else { 1 },
        baseline: args.baseline,
        rule: args.ig_rule,
        target,
        step_batch: args.step_batch,
    }
}

/// Adds `"explanation"` to each line's value (CPU, f32 weights of the predictor's model).
fn explain_lines(
    predictor: &Predictor,
    examples: &[(String, Option<String>)],
    method: ExplainMethod,
    args: &ExplainArgs,
    values: &mut [serde_json::Value],
) -> Result<()> {
    let options = explain_options(method, args, target_index(&predictor.model, args.target.as_deref())?);
    let mut gaps = Vec::new();
    if predictor.long_text().is_some() {
        // Chunked: each document explained as its aggregate of windows is made.
        for ((text, pair), value) in examples.iter().zip(values.iter_mut()) {
            let explanation = explain_document(predictor, "--explain", text, pair.as_deref(), &options)?;
            gaps.extend(explanation.completeness_gap);
            value["explanation"] = serde_json::to_value(&explanation).expect("serialise");
        }
        report_gaps(&gaps, "documents");
        return Ok(());
    }
    check_explainable(predictor, "--explain")?;
    for ((text, pair), value) in examples.iter().zip(values.iter_mut()) {
        let explanation = explain_text(&predictor.model, &predictor.tokenizer, text, pair.as_deref(), &options)?;
        gaps.extend(explanation.numbers.completeness_gap);
        value["explanation"] = serde_json::to_value(&explanation).expect("serialise");
    }
    report_gaps(&gaps, "inputs");
    Ok(())
}

/// Token models: adds `"explanations"`, one per predicted entity, to each sentence's value.
fn explain_sentences(
    predictor: &Predictor,
    sentences: &[Vec<String>],
    predictions: &[WordPrediction],
    method: ExplainMethod,
    args: &ExplainArgs,
    values: &mut [serde_json::Value],
) -> Result<()> {
    if args.target.is_some() {
        return Err(Error::InvalidArgument(format!(
            "--target {}: a token model's explanations cover each predicted entity with its own tags; leave --target out",
            args.target.as_deref().unwrap_or_default()
        )));
    }
    let options = explain_options(method, args, None);
    let mut gaps = Vec::new();
    for ((words, prediction), value) in sentences.iter().zip(predictions).zip(values.iter_mut()) {
        let explanations = explain_entities(predictor, "--explain", words, prediction, &options)?;
        gaps.extend(explanations.iter().filter_map(|e| e.explanation.numbers.completeness_gap));
        value["explanations"] = serde_json::to_value(&explanations).expect("serialise");
    }
    report_gaps(&gaps, "entities");
    Ok(())
}

/// The completeness gaps' summary line (integrated gradients only).
fn report_gaps(gaps: &[f64], what: &str) {
    if !gaps.is_empty() {
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let largest = gaps.iter().copied().fold(0.0, f64::max);
        eprintln!("explain: completeness gap over {} {what}: mean {:.3}%, largest {:.3}%", gaps.len(), 100.0 * mean, 100.0 * largest);
    }
}
