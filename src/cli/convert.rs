//! `berth convert`: re-save a checkpoint in another dtype, with its tokenizer.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::checkpoint::{copy_tokenizer_files, write_safetensors};
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
    if report.initialized.is_empty() {
        save_model(&model, &args.output, dtype)?;
        eprintln!("wrote {} parameters as {dtype:?} to {}", model.params.count(), args.output.display());
    } else {
        // A bare encoder stays bare: a seeded head saved here would later pass for a trained one.
        std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
        let source_config = args.model.join("config.json");
        let config = std::fs::read(&source_config).map_err(|e| Error::io(&source_config, e))?;
        write_atomic(&args.output.join("config.json"), &config)?;
        let stored = model.params.iter().filter(|(name, _)| !report.initialized.iter().any(|n| n == name));
        write_safetensors(&args.output.join("model.safetensors"), stored, dtype)?;
        eprintln!(
            "wrote the encoder as {dtype:?} to {}, without a head: the source has no trained head ({} absent)",
            args.output.display(),
            report.initialized.join(", ")
        );
    }
    copy_tokenizer_files(&args.model, &args.output)?;
    Ok(())
}
