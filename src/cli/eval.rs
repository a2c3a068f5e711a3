//! `berth eval`: the classification report of a trained model on a labelled file.

use std::path::PathBuf;

use clap::Args;

use crate::data::BerthTokenizer;
use crate::data::align::Alignment;
use crate::data::readers::LabelSet;
use crate::error::Result;
use crate::infer::settings::InferenceSettings;
use crate::io::write_atomic;
use crate::model::{LoadOptions, load_model};
use crate::train::dataset::{ColumnChoice, DataSpec};
use crate::train::device_model::{DeviceModel, select_device};
use crate::train::evaluate::evaluate_with;
use crate::train::task::Task;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Trained model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data file.
    #[arg(long)]
    pub data: PathBuf,
    /// tsv, csv, jsonl or conll (default: from the file extension; conll for token models).
    #[arg(long)]
    pub format: Option<String>,
    /// CoNLL files: the 0-based tag column (default: the last).
    #[arg(long)]
    pub tag_column: Option<usize>,
    /// Multi-label: what separates the labels in one field.
    #[arg(long, default_value = ",")]
    pub label_separator: String,
    /// Text column: a header name or a 0-based index.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Second-text column for sentence pairs.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Label column: a header name or a 0-based index.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Whether the first row is a header (default: yes when columns are given by name).
    #[arg(long)]
    pub header: Option<bool>,
    /// Whether `"` quotes fields (default: off for TSV, on for CSV).
    #[arg(long)]
    pub quoting: Option<bool>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// auto, cpu, cuda or sim (auto: CUDA when a GPU is there, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// fp32 or bf16 (bf16 runs the weights and activations in BF16 on a device).
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// Where to write metrics.json (default: metrics.json in the model folder).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write report.md and its charts (plots/*.svg) into this folder;
    /// the training curves come from the model folder's metrics.jsonl.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let (device, precision) = select_device(&args.device, &args.precision)?;
    let (model, _) = load_model(&args.model, &LoadOptions::default())?;
    let settings = InferenceSettings::read(&args.model, model.num_labels())?;
    let task = Task::of_model(&model);
    let spec = DataSpec {
        task,
        columns: ColumnChoice {
            format: args.format.as_deref(),
            text: &args.text_column,
            text_pair: args.text_pair_column.as_deref(),
            label: &args.label_column,
            header: args.header,
            quoting: args.quoting,
        },
        tag_column: args.tag_column,
        label_separator: &args.label_separator,
        alignment: Alignment::parse(settings.alignment.as_deref().unwrap_or("first"))?,
    };
    let raw = spec.read(&args.data)?;
    let labels = LabelSet::from_names(model.labels.clone())?;
    let tokenizer = BerthTokenizer::from_dir(&args.model, args.max_length.min(model.config.max_position_embeddings))?;
    let data = spec.encode(&args.data, &raw, &labels, &tokenizer)?;
    let on_device = match &device {
        Some(d) => Some(DeviceModel::upload(d, precision, &model.params, None)?),
        None => None,
    };
    let device_params = on_device.as_ref().map(|e| e.params.as_slice());
    let mut evaluation = evaluate_with(&model, device_params, &data, args.batch_size, tokenizer.pad_id(), settings.thresholds.as_deref())?;
    if task == Task::Classification && (settings.threshold.is_some() || settings.temperature.is_some()) {
        // What predict does: the fitted temperature, then the tuned threshold.
        evaluation = evaluation.with_decision(&data, &model.labels, settings.threshold, settings.temperature.unwrap_or(1.0))?;
    }
    println!("{}", evaluation.to_text());
    println!("loss {:.4}", evaluation.loss);
    let path = args.output.clone().unwrap_or_else(|| args.model.join("metrics.json"));
    write_atomic(&path, serde_json::to_string_pretty(&evaluation.to_json()).expect("json").as_bytes())?;
    eprintln!("wrote {}", path.display());
    if let Some(dir) = &args.report {
        write_eval_report(dir, &args, &model.labels, &evaluation, &data, task)?;
    }
    Ok(())
}

fn write_eval_report(
    dir: &std::path::Path,
    args: &EvalArgs,
    labels: &[String],
    evaluation: &crate::train::evaluate::Evaluation,
    data: &crate::train::dataset::EncodedDataset,
    task: Task,
) -> Result<()> {
    // The training log, when the model folder is a training run's output.
    let log = std::fs::read_to_string(args.model.join("metrics.jsonl"))
        .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default();
    let multi_gold = match &data.targets {
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
    };
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    let files = crate::report::write_report(dir, &input)?;
    eprintln!("report: {}", files.iter().map(|f| dir.join(f).display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(())
}
