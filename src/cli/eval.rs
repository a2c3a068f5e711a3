//! `berth eval`: the classification report of a trained model on a labelled file.

use std::path::PathBuf;

use clap::Args;

use crate::data::BerthTokenizer;
use crate::data::align::Alignment;
use crate::data::readers::LabelSet;
use crate::error::{Error, Result};
use crate::infer::explain::explain_encoded;
use crate::io::write_atomic;
use crate::model::device_model::{DeviceModel, Precision};
use crate::model::explain::ExplainOptions;
use crate::model::settings::{DataSettings, InferenceSettings, choose};
use crate::model::task::Task;
use crate::model::{InferenceWeights, LoadOptions, load_model};
use crate::report::errors::{ExplainedError, most_confident_errors};
use crate::train::dataset::{ColumnChoice, DataSpec};
use crate::train::evaluate::{Redecide, evaluate_weights};
use crate::train::option_groups::DataColumnOptions;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Trained model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data file.
    #[arg(long)]
    pub data: PathBuf,
    /// The data file's format and columns; each unset one is taken from how
    /// the model was trained, else train's default.
    #[command(flatten)]
    pub columns: DataColumnOptions,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Tokens per example (default: as trained, else 128).
    #[arg(long)]
    pub max_length: Option<usize>,
    #[command(flatten)]
    pub device: super::DeviceArgs,
    /// Documents longer than the window: as the model was trained (its
    /// berth-inference.json), unless these flags say otherwise. Chunked
    /// documents are scored as documents.
    #[command(flatten)]
    pub long_text: crate::train::long_text::LongTextArgs,
    /// Where to write metrics.json (default: metrics.json in the model folder).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write report.md and its charts (plots/*.svg) into this folder;
    /// the training curves come from the model folder's metrics.jsonl.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// With --report: the K most confident errors of each true label,
    /// explained (integrated gradients toward the predicted label, on the
    /// CPU), in report.md, errors.html and plots/errors_<i>.svg.
    /// Single-label models.
    #[arg(long, value_name = "K")]
    pub explain: Option<usize>,
    /// Integration steps of those explanations.
    #[arg(long, default_value_t = 32)]
    pub explain_steps: usize,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(k) = args.explain {
        let refuse = |m: &str| Err(Error::InvalidArgument(m.into()));
        if args.report.is_none() {
            return refuse("--explain K writes into the report: add --report DIR");
        }
        if k == 0 {
            return refuse("--explain 0: explain at least one error per label");
        }
        if args.explain_steps == 0 {
            return refuse("--explain-steps 0: integrated gradients needs at least one step");
        }
    }
    let (device, precision) = args.device.open()?;
    if args.explain.is_some() && precision == Precision::Int8 {
        return Err(Error::InvalidArgument(
            "--explain needs gradients, and --precision int8 has none (its layers are inference only): explain in fp32".into(),
        ));
    }
    if args.explain.is_some() && precision == Precision::Bf16 && device.is_none() {
        return Err(Error::InvalidArgument(crate::infer::explain::EXPLAIN_IN_FP32_ON_THE_CPU.into()));
    }
    let (model, _) = load_model(&args.model, &LoadOptions::for_prediction())?;
    let settings = InferenceSettings::read(&args.model, model.num_labels())?;
    let task = Task::of_model(&model);
    // Each data option: the flag, else how the model was trained, else the default.
    let saved = settings.data.clone();
    let from_saved = |f: fn(&DataSettings) -> Option<String>| saved.as_ref().and_then(f);
    let text = choose(args.columns.text_column.clone(), from_saved(|d| Some(d.text_column.clone())), "text".to_string());
    let label = choose(args.columns.label_column.clone(), from_saved(|d| Some(d.label_column.clone())), "label".to_string());
    let separator = choose(args.columns.label_separator.clone(), from_saved(|d| Some(d.label_separator.clone())), ",".to_string());
    let text_pair = choose(args.columns.text_pair_column.clone().map(Some), saved.as_ref().map(|d| d.text_pair_column.clone()), None);
    let format = choose(args.columns.format.clone().map(Some), saved.as_ref().map(|d| d.format.clone()), None);
    let header = choose(args.columns.header.map(Some), saved.as_ref().map(|d| d.header), None);
    let quoting = choose(args.columns.quoting.map(Some), saved.as_ref().map(|d| d.quoting), None);
    let tag_column = choose(args.columns.tag_column.map(Some), saved.as_ref().map(|d| d.tag_column), None);
    let max_length = choose(args.max_length, saved.as_ref().map(|d| d.max_length), 128);
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let lines = [
        ("format", shown(&format.0), format.1),
        ("text column", text.0.clone(), text.1),
        ("text pair column", shown(&text_pair.0), text_pair.1),
        ("label column", label.0.clone(), label.1),
        ("label separator", separator.0.clone(), separator.1),
        ("header", shown(&header.0.map(|h| h.to_string())), header.1),
        ("quoting", shown(&quoting.0.map(|q| q.to_string())), quoting.1),
        ("tag column", shown(&tag_column.0.map(|c| c.to_string())), tag_column.1),
        ("max length", max_length.0.to_string(), max_length.1),
    ];
    let (long_text, long_text_source) = args.long_text.resolve(settings.long_text)?;
    if long_text.is_some() && task == Task::TokenClassification {
        return Err(crate::error::Error::InvalidArgument(crate::data::chunks::CHUNKING_IS_FOR_SEQUENCE_TASKS.into()));
    }
    // Refused before any work, so nothing is written for a request that cannot be met.
    if let Some(k) = args.explain
        && (task != Task::Classification || long_text.is_some())
    {
        return Err(Error::InvalidArgument(format!(
            "--explain {k}: errors are explained for single-label models read one window per input; this one is {}{}",
            task.name(),
            if long_text.is_some() { ", chunked" } else { "" }
        )));
    }
    let long_text_line = crate::train::long_text::describe(long_text);
    let (direction, direction_source) = args.long_text.direction(settings.truncation_direction, long_text.is_some())?;
    let mut lines = lines.to_vec();
    lines.push(("long text", long_text_line, long_text_source));
    if long_text.is_none() {
        lines.push(("truncation direction", crate::train::long_text::direction_name(direction).into(), direction_source));
    }
    let described: Vec<String> = lines.iter().map(|(k, v, from)| format!("  {k}: {v} ({from})")).collect();
    eprintln!("data settings (- means from the file):\n{}", described.join("\n"));
    let spec = DataSpec {
        task,
        columns: ColumnChoice {
            format: format.0.as_deref(),
            text: &text.0,
            text_pair: text_pair.0.as_deref(),
            label: &label.0,
            header: header.0,
            quoting: quoting.0,
        },
        tag_column: tag_column.0,
        label_separator: &separator.0,
        alignment: Alignment::parse(settings.alignment.as_deref().unwrap_or("first"))?,
        long_text,
    };
    let raw = spec.read(&args.data)?;
    let labels = LabelSet::from_names(model.labels.clone())?;
    let mut tokenizer = BerthTokenizer::from_dir(
        &args.model,
        crate::train::trainer::effective_max_length(max_length.0, model.config.max_sequence_length()),
    )?;
    tokenizer.check_vocab(model.config.vocab_size)?;
    if let Some(chunks) = long_text {
        tokenizer.enable_windows(chunks.stride)?;
    }
    tokenizer.set_truncation_direction(direction)?;
    let data = spec.encode(&args.data, &raw, &labels, &tokenizer)?;
    // The weights as predict reads them: a device's copies, or the CPU's
    // load-time cache in the precision asked for.
    let (on_device, cache);
    let weights = match &device {
        Some(d) => {
            on_device = DeviceModel::upload(d, precision, &model.params)?;
            InferenceWeights::Device(&on_device.params)
        }
        None => {
            cache = model.inference_cache(precision)?;
            InferenceWeights::Cpu(&cache)
        }
    };
    if device.is_none() {
        match precision {
            Precision::Int8 => eprintln!("engine: cpu ({})", crate::backend::cpu::int8::describe()),
            Precision::Bf16 => eprintln!("engine: cpu ({})", crate::backend::cpu::bf16_linear::describe()),
            Precision::Fp32 => {}
        }
    }
    let mut evaluation = evaluate_weights(&model, weights, &data, args.batch_size, tokenizer.pad_id(), settings.thresholds.as_deref())?;
    if task == Task::Classification && (settings.threshold.is_some() || settings.temperature.is_some()) {
        // What predict does: the fitted temperature, then the tuned threshold.
        evaluation = evaluation.with_decision(&model.labels, settings.threshold, settings.temperature.unwrap_or(1.0))?;
    }
    println!("{}", evaluation.to_text());
    println!("loss {:.4}", evaluation.loss);
    let path = args.output.clone().unwrap_or_else(|| args.model.join("metrics.json"));
    write_atomic(&path, serde_json::to_string_pretty(&evaluation.to_json()).expect("json").as_bytes())?;
    eprintln!("wrote {}", path.display());
    if let Some(dir) = &args.report {
        write_eval_report(dir, &args, &model.labels, &evaluation, &data, task)?;
        if let Some(k) = args.explain {
            let title = args.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let classes = explain_errors(&model, &tokenizer, &evaluation, &data, k, args.explain_steps)?;
            let files = crate::report::errors::write_errors(dir, &title, classes, k)?;
            eprintln!("explained errors: {}", files.iter().map(|f| dir.join(f).display().to_string()).collect::<Vec<_>>().join(", "));
        }
    }
    Ok(())
}

/// The `k` most confident errors of each true label, each explained toward
/// the label the model chose: -> (label, its errors) per label.
fn explain_errors(
    model: &crate::model::BertClassifier,
    tokenizer: &BerthTokenizer,
    evaluation: &crate::metrics::evaluation::Evaluation,
    data: &crate::train::dataset::EncodedDataset,
    k: usize,
    steps: usize,
) -> Result<Vec<(String, Vec<ExplainedError>)>> {
    let labels = &model.labels;
    let probabilities = crate::metrics::calibration::softmax_rows(&evaluation.logits, evaluation.temperature);
    let confidence: Vec<f64> = probabilities.iter().zip(&evaluation.predictions).map(|(row, &p)| row[p]).collect();
    let picked = most_confident_errors(&evaluation.predictions, &evaluation.gold, &confidence, labels.len(), k);
    let started = std::time::Instant::now();
    let mut explained = 0;
    let mut out = Vec::with_capacity(labels.len());
    for (class, rows) in picked.into_iter().enumerate() {
        let mut errors = Vec::with_capacity(rows.len());
        for row in rows {
            let predicted = evaluation.predictions[row];
            let options = ExplainOptions { steps, target: Some(predicted), ..ExplainOptions::default() };
            let e = explain_encoded(model, tokenizer, &data.encodings[row], &options)?;
            errors.push(ExplainedError {
                row,
                true_label: labels[class].clone(),
                predicted: labels[predicted].clone(),
                confidence: confidence[row],
                words: e.words.iter().map(|w| (w.word.clone(), w.attribution)).collect(),
                completeness_gap: e.numbers.completeness_gap,
            });
            explained += 1;
        }
        out.push((labels[class].clone(), errors));
    }
    eprintln!("explained {explained} errors at {steps} steps in {:.1} s", started.elapsed().as_secs_f64());
    Ok(out)
}

fn write_eval_report(
    dir: &std::path::Path,
    args: &EvalArgs,
    labels: &[String],
    evaluation: &crate::metrics::evaluation::Evaluation,
    data: &crate::train::dataset::EncodedDataset,
    task: Task,
) -> Result<()> {
    // The training log, when the model folder is a training run's output.
    let log = std::fs::read_to_string(args.model.join("metrics.jsonl"))
        .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default();
    let multi_gold = match data.gold_targets() {
        crate::train::dataset::Targets::Multi(g) => Some(g.as_slice()),
        _ => None,
    };
    let input = crate::report::ReportInput {
        title: args.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        labels,
        train_counts: &[],
        evaluation,
        multi_gold,
        eval_file: data.path.display().to_string(),
        log,
        metric: task.default_metric().into(),
        setup: vec![format!("model: `{}`", args.model.display())],
        profile: None,
    };
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    let files = crate::report::write_report(dir, &input)?;
    eprintln!("report: {}", files.iter().map(|f| dir.join(f).display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(())
}
