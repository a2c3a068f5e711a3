//! The `berth` command line: one file per subcommand.

pub mod bench;
pub mod bench_device;
pub mod check;
pub mod convert;
pub mod device_info;
pub mod eval;
pub mod input;
pub mod predict;
pub mod serve;
pub mod train;

use clap::{Parser, Subcommand};

use crate::error::Result;

#[derive(Parser, Debug)]
#[command(name = "berth", version, about = "Fine-tune and serve BERT-family encoders for classification and sequence tasks")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fine-tune a classifier on a labelled file (flags override a --config TOML file).
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained classifier on a labelled file: report and metrics.json.
    Eval(eval::EvalArgs),
    /// Predict labels for texts, one example per line (TAB separates a text pair).
    Predict(predict::PredictArgs),
    /// Serve a classifier over HTTP: POST /predict with dynamic batching, /health, /info, /metrics.
    Serve(serve::ServeArgs),
    /// Re-save a checkpoint in another dtype (for example a BF16 copy for the GPU machine).
    Convert(convert::ConvertArgs),
    /// Time one benchmark case (forward or train step) on the CPU.
    Bench(bench::BenchArgs),
    /// Check every kernel against the CPU reference on a device (sim, cuda), plus the CPU gradient checks.
    Check(check::CheckArgs),
    /// Probe the CUDA stack: libraries, context, and whether our kernels load and compute correctly.
    DeviceInfo(device_info::DeviceInfoArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Convert(args) => convert::run(args),
        Command::DeviceInfo(args) => device_info::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
