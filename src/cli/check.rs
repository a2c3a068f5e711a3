//! `berth check`: every kernel's parity with the CPU reference on the chosen
//! device, one table row per kernel and shape. What a user runs on a new GPU,
//! and what tools/gpu-check.sh runs on the lent machine.

use clap::Args;

use crate::backend::cuda::check::{format_table, run_all};
use crate::backend::cuda::{DeviceChoice, open};
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Where to run the kernels: `sim` runs the CUDA kernels on the CPU;
    /// `cpu` runs only the CPU gradient checks.
    #[arg(long, value_enum, default_value = "sim")]
    pub device: DeviceChoice,
    /// Only kernel families whose name contains this (for example `attention`).
    #[arg(long)]
    pub only: Option<String>,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let mut rows = Vec::new();
    if let Some(device) = open(args.device)? {
        println!("device: {}", device.describe());
        rows.extend(run_all(&device, args.only.as_deref()));
    }
    print!("{}", format_table(&rows));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    println!("{} rows, {failed} failed", rows.len());
    if failed == 0 { Ok(()) } else { Err(Error::Device(format!("{failed} of {} parity checks failed", rows.len()))) }
}
