//! `berth predict`: JSON lines out, one per input line.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::input::read_lines;
use crate::data::conll::read_word_lines;
use crate::error::{Error, Result};
use crate::infer::Predictor;
use crate::train::device_model::select_device;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model folder: config.json, model.safetensors and tokenizer files.
    #[arg(long)]
    pub model: PathBuf,
    /// Input file: one example per line; a TAB separates text and text pair.
    #[arg(long)]
    pub input: PathBuf,
    /// Token models: each input line is one sentence of words separated by
    /// spaces; the output is `{"words", "tags", "entities"}` per line.
    #[arg(long)]
    pub words: bool,
    /// Output file for JSON lines (standard output when omitted).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per example after truncation (longest-first for pairs).
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// auto, cpu, cuda or sim (auto: CUDA when a GPU is there, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// fp32 or bf16 (bf16 runs the weights and activations in BF16 on a device).
    #[arg(long, default_value = "fp32")]
    pub precision: String,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let (device, precision) = select_device(&args.device, &args.precision)?;
    let (predictor, report) = Predictor::load_on(&args.model, args.max_length, device.as_ref(), precision)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let mut text = String::new();
    if args.words {
        let sentences = read_word_lines(&args.input)?;
        for p in predictor.predict_words(&sentences, args.batch_size)? {
            text.push_str(&serde_json::to_string(&p).expect("predictions serialise"));
            text.push('\n');
        }
    } else {
        let examples = read_lines(&args.input)?;
        for p in predictor.predict(&examples, args.batch_size)? {
            text.push_str(&serde_json::to_string(&p).expect("predictions serialise"));
            text.push('\n');
        }
    }
    match &args.output {
        Some(path) => crate::io::write_atomic(path, text.as_bytes()),
        None => std::io::stdout().lock().write_all(text.as_bytes()).map_err(|e| Error::io("<stdout>", e)),
    }
}
