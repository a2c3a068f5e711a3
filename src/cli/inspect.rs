//! `berth inspect`: what one input looks like inside a model. Prints a JSON
//! line per input (word pieces, hidden-state norms per layer, logits), and
//! on request writes the full tensors (`--dump`, safetensors, laid out in
//! docs/formats.md) and pictures (`--out`: attention heatmaps per layer, the
//! hidden-state norms, an index.html).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::input::read_lines;
use crate::data::tokenize::{BerthTokenizer, Encoded, Truncation};
use crate::data::{Batch, pad_batch};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::inspect::{Inspection, inspect};
use crate::model::multitask::MultiTaskModel;
use crate::model::params::HeadKind;
use crate::model::settings::max_length_for;
use crate::model::{BertClassifier, LoadOptions, load_model};
use crate::report::inspect::{IndexEntry, attention_grid, hidden_norm_chart, index_html};
use crate::tensor::{DType, Tensor};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model folder: a fine-tuned classifier, a multi-task model or a bare encoder.
    #[arg(long)]
    pub model: PathBuf,
    /// The text to inspect.
    #[arg(long, conflicts_with = "input")]
    pub text: Option<String>,
    /// The text's pair (with --text).
    #[arg(long, requires = "text")]
    pub pair: Option<String>,
    /// A file of inputs, one per line (a TAB separates text and pair).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write every tensor (hidden states, attention probabilities, pooled
    /// output, logits, ids) to this safetensors file.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Attention layers to keep, 0-based: `A-B` or `A` (default: all).
    /// Hidden states are small and always written whole.
    #[arg(long)]
    pub layers: Option<String>,
    /// Heads to keep: a list of indices and ranges, `0,3,8-11` (default: all).
    #[arg(long)]
    pub heads: Option<String>,
    /// Folder for the pictures and index.html.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Arithmetic of the forward pass: f32 (as predict runs) or f64 (a reference).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f64"])]
    pub dtype: String,
    /// Tokens per input after truncation (default: as the model was trained, else 128).
    #[arg(long)]
    pub max_length: Option<usize>,
}

/// The model to look into: one classifier for the encoder, and the logits
/// of each head (one unnamed head, a multi-task model's named heads, or
/// none for a bare encoder).
struct Subject {
    encoder: BertClassifier,
    /// (head name, model, whether its head was trained).
    heads: Vec<(Option<String>, BertClassifier)>,
    /// Whether the pooler's weights came from the checkpoint.
    pooler_trained: bool,
}

fn load_subject(dir: &Path, dtype: DType) -> Result<Subject> {
    if MultiTaskModel::is_multitask(dir) {
        let multi = MultiTaskModel::load(dir)?;
        let mut heads = Vec::new();
        for (h, info) in multi.heads.iter().enumerate() {
            heads.push((Some(info.name.clone()), multi.head_model(h)?.0.to_dtype(dtype)));
        }
        let encoder = heads[0].1.clone();
        return Ok(Subject { encoder, heads, pooler_trained: true });
    }
    let (model, report) = load_model(dir, &LoadOptions { dtype, ..LoadOptions::default() })?;
    let head_trained = !report.initialized.iter().any(|n| n.starts_with("classifier."));
    let pooler_trained = !report.initialized.iter().any(|n| n.starts_with("bert.pooler."));
    if !head_trained {
        eprintln!("note: {} has no trained classification head: no logits are shown", dir.display());
    }
    let heads = if head_trained { vec![(None, model.clone())] } else { Vec::new() };
    Ok(Subject { encoder: model, heads, pooler_trained })
}

/// `A-B` or `A` -> the 0-based layers A..=B, checked against the model's.
fn parse_layers(text: Option<&str>, layers: usize) -> Result<Vec<usize>> {
    let Some(text) = text else { return Ok((0..layers).collect()) };
    let bad = |why: String| Error::InvalidArgument(format!("--layers {text}: {why}"));
    let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| bad(format!("`{s}` is not a layer index; write A-B or A")));
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(text)?, parse(text)?),
    };
    if a > b {
        return Err(bad(format!("the range runs backwards ({a} > {b})")));
    }
    if b >= layers {
        return Err(bad(format!("the model has {layers} layers, 0 to {}", layers - 1)));
    }
    Ok((a..=b).collect())
}

/// `0,3,8-11` -> those heads, in the order given, checked against the model's.
fn parse_heads(text: Option<&str>, heads: usize) -> Result<Vec<usize>> {
    let Some(text) = text else { return Ok((0..heads).collect()) };
    let bad = |why: String| Error::InvalidArgument(format!("--heads {text}: {why}"));
    let mut out = Vec::new();
    for part in text.split(',') {
        let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| bad(format!("`{s}` is not a head index; write a list like 0,3,8-11")));
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(part)?, parse(part)?),
        };
        if a > b {
            return Err(bad(format!("the range {part} runs backwards")));
        }
        if b >= heads {
            return Err(bad(format!("the model has {heads} heads per layer, 0 to {}", heads - 1)));
        }
        for h in a..=b {
            if out.contains(&h) {
                return Err(bad(format!("head {h} is named twice")));
            }
            out.push(h);
        }
    }
    Ok(out)
}

/// probs (H, T, T) -> the chosen heads' blocks, (heads.len(), T, T), as f64.
fn select_heads(probs: &Tensor, heads: &[usize]) -> Vec<f64> {
    let all = probs.to_f64_vec();
    let block = probs.shape()[1] * probs.shape()[2];
    heads.iter().flat_map(|&h| all[h * block..(h + 1) * block].iter().copied()).collect()
}

/// (T, H) hidden state -> each token's Euclidean norm.
fn row_norms(hidden: &Tensor) -> Vec<f64> {
    let width = hidden.shape()[1];
    hidden.to_f64_vec().chunks(width).map(|row| row.iter().map(|v| v * v).sum::<f64>().sqrt()).collect()
}

/// One safetensors entry: name, dtype, shape and little-endian bytes.
type DumpEntry = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

fn float_entry(name: String, t: &Tensor) -> DumpEntry {
    let dtype = match t.dtype() {
        DType::F64 => safetensors::Dtype::F64,
        DType::F32 => safetensors::Dtype::F32,
        DType::BF16 => safetensors::Dtype::BF16,
    };
    (name, dtype, t.shape().to_vec(), t.to_le_bytes())
}

fn id_entry(name: String, ids: &[u32]) -> DumpEntry {
    let bytes = ids.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    (name, safetensors::Dtype::I64, vec![ids.len()], bytes)
}

fn write_dump(path: &Path, entries: &[DumpEntry], metadata: HashMap<String, String>) -> Result<()> {
    let views = entries
        .iter()
        .map(|(n, d, s, b)| safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    let data = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    write_atomic(path, &data)
}

pub fn run(args: InspectArgs) -> Result<()> {
    // Inputs first: a bad line is reported before a model is loaded.
    let inputs: Vec<(String, Option<String>)> = match (&args.text, &args.input) {
        (Some(text), None) => vec![(text.clone(), args.pair.clone())],
        (None, Some(path)) => read_lines(path)?,
        _ => return Err(Error::InvalidArgument("give the input: --text \"…\" (with --pair \"…\") or --input FILE".into())),
    };
    if let Some(text) = &args.text
        && text.trim().is_empty()
    {
        return Err(Error::InvalidArgument("--text is blank".into()));
    }
    let dtype = if args.dtype == "f64" { DType::F64 } else { DType::F32 };
    let subject = load_subject(&args.model, dtype)?;
    let config = &subject.encoder.config;
    let layers = parse_layers(args.layers.as_deref(), config.num_hidden_layers)?;
    let heads = parse_heads(args.heads.as_deref(), config.num_attention_heads)?;
    let (max_length, source) = max_length_for(&args.model, args.max_length);
    let max_length = max_length.min(config.max_sequence_length());
    eprintln!("max length: {max_length} ({source})");
    let tokenizer = BerthTokenizer::from_dir(&args.model, max_length)?;
    tokenizer.check_vocab(config.vocab_size)?;
    let piece = |id: u32| tokenizer.inner().id_to_token(id).unwrap_or_else(|| format!("<{id}>"));

    let many = inputs.len() > 1;
    let prefix = |i: usize| if many { format!("{i}.") } else { String::new() };
    let mut entries: Vec<DumpEntry> = Vec::new();
    let mut index = Vec::new();
    let mut summaries = String::new();
    let mut token_lists = Vec::new();
    for (i, (text, pair)) in inputs.iter().enumerate() {
        let full = tokenizer.encode_with(text, pair.as_deref(), Truncation::None)?;
        let encoded: Encoded = tokenizer.encode_with(text, pair.as_deref(), Truncation::Right)?;
        if full.ids.len() > encoded.ids.len() {
            eprintln!("note: input {} has {} word pieces; the first {max_length} are inspected", i + 1, full.ids.len());
        }
        let batch: Batch = pad_batch(&[&encoded], tokenizer.pad_id());
        let seen: Inspection = inspect(&subject.encoder, &batch)?;
        let tokens: Vec<String> = encoded.ids.iter().map(|&id| piece(id)).collect();
        let norms: Vec<Vec<f64>> = seen.hidden.iter().map(row_norms).collect();

        // Each head's logits, from the same encoder output.
        let mut outputs = serde_json::Map::new();
        let mut output_lines = Vec::new();
        for (name, model) in &subject.heads {
            let logits = if name.is_none() { seen.logits.clone() } else { inspect(model, &batch)?.logits };
            let key = name.as_ref().map(|n| format!("logits.{n}")).unwrap_or_else(|| "logits".into());
            entries.push(float_entry(format!("{}{key}", prefix(i)), &logits));
            let values = logits.to_f64_vec();
            let shown = match model.head {
                HeadKind::SequenceClassification => {
                    let pairs: Vec<String> = model.labels.iter().zip(&values).map(|(l, v)| format!("{l} {v:.4}")).collect();
                    output_lines.push(format!("{key}: {}", pairs.join(", ")));
                    serde_json::Value::Object(model.labels.iter().cloned().zip(values.iter().map(|&v| serde_json::json!(v))).collect())
                }
                HeadKind::TokenClassification => {
                    let c = model.num_labels();
                    let tags: Vec<&str> = values.chunks(c).map(|row| model.labels[crate::numerics::argmax(row)].as_str()).collect();
                    output_lines.push(format!("{key} (top tag per piece): {}", tags.join(" ")));
                    serde_json::json!({"labels": model.labels, "per_piece": values.chunks(c).map(<[f64]>::to_vec).collect::<Vec<_>>()})
                }
            };
            outputs.insert(key, shown);
        }

        entries.push(id_entry(format!("{}input_ids", prefix(i)), &encoded.ids));
        entries.push(id_entry(format!("{}token_type_ids", prefix(i)), &encoded.type_ids));
        for (l, hidden) in seen.hidden.iter().enumerate() {
            entries.push(float_entry(format!("{}hidden.{l}", prefix(i)), hidden));
        }
        for &l in &layers {
            let chosen = if heads.len() == config.num_attention_heads && heads.iter().enumerate().all(|(a, &b)| a == b) {
                seen.attention[l].clone()
            } else {
                Tensor::from_f64_like(
                    select_heads(&seen.attention[l], &heads),
                    &[heads.len(), encoded.ids.len(), encoded.ids.len()],
                    &seen.attention[l],
                )?
            };
            entries.push(float_entry(format!("{}attn.{l}", prefix(i)), &chosen));
        }
        if let (Some(pooled), true) = (&seen.pooled, subject.pooler_trained) {
            entries.push(float_entry(format!("{}pooled", prefix(i)), pooled));
        }

        if let Some(out) = &args.out {
            let folder = out.join(i.to_string());
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            let mut pictures = Vec::new();
            let chart = folder.join("hidden-norms.svg");
            write_atomic(&chart, hidden_norm_chart(&tokens, &norms).as_bytes())?;
            pictures.push((format!("{i}/hidden-norms.svg"), "hidden-state norm of each token through the layers".to_string()));
            for &l in &layers {
                let file = format!("attention-layer-{l}.svg");
                let svg = attention_grid(&tokens, &select_heads(&seen.attention[l], &heads), &heads, l);
                write_atomic(&folder.join(&file), svg.as_bytes())?;
                pictures.push((format!("{i}/{file}"), format!("layer {l}: attention of heads {:?}", heads)));
            }
            let title = match pair {
                Some(p) => format!("input {}: {text} ⟨pair⟩ {p}", i + 1),
                None => format!("input {}: {text}", i + 1),
            };
            let token_rows = tokens.iter().zip(&encoded.type_ids).enumerate().map(|(p, (t, &ty))| (p, t.clone(), ty)).collect();
            index.push(IndexEntry { title, tokens: token_rows, outputs: output_lines.clone(), pictures });
        }

        let summary = serde_json::json!({
            "input": i + 1,
            "tokens": tokens,
            "hidden_norms": norms,
            "outputs": outputs,
        });
        summaries.push_str(&summary.to_string());
        summaries.push('\n');
        token_lists.push(tokens);
    }

    if let Some(path) = &args.dump {
        let metadata = HashMap::from([
            ("format".to_string(), "berth-inspect".to_string()),
            ("inputs".to_string(), inputs.len().to_string()),
            ("layers".to_string(), serde_json::to_string(&layers).expect("json")),
            ("heads".to_string(), serde_json::to_string(&heads).expect("json")),
            ("tokens".to_string(), serde_json::to_string(&token_lists).expect("json")),
            ("dtype".to_string(), args.dtype.clone()),
        ]);
        write_dump(path, &entries, metadata)?;
        eprintln!("wrote {} tensors to {}", entries.len(), path.display());
    }
    if let Some(out) = &args.out {
        let page = out.join("index.html");
        write_atomic(&page, index_html(&args.model.display().to_string(), &index).as_bytes())?;
        eprintln!("wrote {}", page.display());
    }
    use std::io::Write;
    std::io::stdout().lock().write_all(summaries.as_bytes()).map_err(|e| Error::io("<stdout>", e))
}
