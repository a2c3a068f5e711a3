//! `berth device-info`: what CUDA this machine offers, step by step.

use clap::Args;

use crate::check::probe::run_probe;
use crate::device::kernels::{COMPILED_WITH_NVCC, KERNEL_FILES};
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct DeviceInfoArgs {
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DeviceInfoArgs) -> Result<()> {
    let report = run_probe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
    } else {
        println!(
            "berth {} — kernels built with nvcc: {COMPILED_WITH_NVCC}; embedded files: {}",
            env!("CARGO_PKG_VERSION"),
            KERNEL_FILES.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        );
        for s in &report {
            println!("{:<36} {:<4} {}", s.step, if s.ok { "ok" } else { "FAIL" }, s.detail);
        }
    }
    if report.iter().all(|s| s.ok) { Ok(()) } else { Err(Error::Device("some CUDA probe steps failed (see above)".into())) }
}
