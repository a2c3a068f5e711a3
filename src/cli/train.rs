//! `berth train`: fine-tune a classifier. Flags override a `--config` TOML file.

use clap::Args;

use crate::error::Result;
use crate::train::{TrainOptions, train};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub options: TrainOptions,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let options = match &args.options.config {
        Some(path) => args.options.merged_over(&TrainOptions::from_toml_file(path)?),
        None => args.options.clone(),
    };
    let config = options.resolve()?;
    let summary = train(&config)?;
    if let Some(e) = &summary.final_eval {
        println!("{}", e.to_text());
        println!("eval loss {:.4}", e.loss);
    }
    println!(
        "trained {} steps in {:.1} s ({:.0} real tokens/s){}; model saved to {}",
        summary.steps,
        summary.seconds,
        summary.real_tokens as f64 / summary.seconds.max(1e-9),
        summary.best_step.map(|s| format!(", best at step {s}")).unwrap_or_default(),
        summary.output.display()
    );
    Ok(())
}
