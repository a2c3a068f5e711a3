//! `berth convert`: re-save a checkpoint in another dtype, with its tokenizer.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::model::checkpoint::copy_tokenizer_files;
use crate::model::{LoadOptions, load_model, save_model};
use crate::tensor::DType;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Source model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Destination folder (created if missing).
    #[arg(long)]
    pub output: PathBuf,
    /// Storage dtype of the written model.safetensors: f32, bf16 or f64.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let dtype = DType::parse(&args.dtype)?;
    let (model, report) = load_model(&args.model, &LoadOptions::default())?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    save_model(&model, &args.output, dtype)?;
    copy_tokenizer_files(&args.model, &args.output)?;
    eprintln!("wrote {} parameters as {dtype:?} to {}", model.params.count(), args.output.display());
    Ok(())
}
