//! The `berth` command line: one file per subcommand.

pub mod bench;
pub mod bench_cpu;
pub mod bench_device;
pub mod check;
pub mod convert;
pub mod device_info;
pub mod eval;
pub mod input;
pub mod inspect;
pub mod predict;
pub mod serve;
pub mod train;

use clap::{Parser, Subcommand};

pub use crate::backend::DeviceArgs;
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
    /// Look inside a model: word pieces, hidden states, attention per layer and head, logits; dumps and pictures.
    Inspect(inspect::InspectArgs),
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
        Command::Inspect(args) => inspect::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Convert(args) => convert::run(args),
        Command::DeviceInfo(args) => device_info::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceChoice;
    use crate::tensor::Precision;

    fn device_of(args: &[&str]) -> std::result::Result<DeviceArgs, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        Ok(match cli.command {
            Command::Eval(a) => a.device,
            Command::Predict(a) => a.device,
            Command::Serve(a) => a.device,
            other => panic!("not a device command: {other:?}"),
        })
    }

    #[test]
    fn r16_predict_eval_and_serve_share_one_typed_device_flag_group() {
        let commands: [&[&str]; 3] = [
            &["berth", "predict", "--model", "m", "--input", "i"],
            &["berth", "eval", "--model", "m", "--data", "d"],
            &["berth", "serve", "--model", "m"],
        ];
        for command in commands {
            let plain = device_of(command).unwrap();
            assert_eq!((plain.choice(), plain.precision()), (DeviceChoice::Auto, Precision::Fp32), "{command:?}");
            let chosen = device_of(&[command, &["--device", "SIM", "--precision", "bf16"]].concat()).unwrap();
            assert_eq!((chosen.choice(), chosen.precision()), (DeviceChoice::Sim, Precision::Bf16), "{command:?}");
            let err = device_of(&[command, &["--device", "tpu"]].concat()).unwrap_err();
            assert!(err.contains("'tpu'") && err.contains("--device") && err.contains("cuda"), "{err}");
            let err = device_of(&[command, &["--precision", "fp8"]].concat()).unwrap_err();
            assert!(err.contains("'fp8'") && err.contains("--precision") && err.contains("bf16"), "{err}");
        }
        // BF16 on the CPU opens with no device: the CPU's BF16 kernels run it.
        let cpu_bf16 = DeviceArgs { device: Some(DeviceChoice::Cpu), precision: Some(Precision::Bf16) };
        let (device, precision) = cpu_bf16.open().unwrap();
        assert!(device.is_none() && precision == Precision::Bf16);
    }
}
