//! `berth check`: the gradient checks (CPU, f64, central differences), then
//! every kernel's parity with the CPU reference on the chosen device, one
//! table row per op or kernel and shape. What a user runs on a new GPU, and
//! what tools/gpu-check.sh runs on the lent machine.

use clap::Args;

use crate::check::gradcheck::{GradcheckRow, run_gradchecks};
use crate::check::kernels::{CheckRow, all_cases, format_table, run_all};
use crate::device::{DeviceChoice, open};
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Where to run the kernels: `sim` runs the CUDA kernels on the CPU;
    /// `cpu` runs only the CPU gradient checks.
    #[arg(long, value_enum, default_value = "sim")]
    pub device: DeviceChoice,
    /// Only kernel families whose name contains this (for example `attention`), and
    /// gradient-check families whose "gradcheck <family>" name does (`gradcheck` for all).
    #[arg(long)]
    pub only: Option<String>,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Skip the CPU gradient checks (f64, central differences) and run only the kernels.
    #[arg(long)]
    pub skip_gradcheck: bool,
}

/// A gradient check as a table row: its relative error stands in the error
/// column, and the rule column holds its tolerance, so "of tol" reads the same as for a kernel.
fn gradcheck_row(r: GradcheckRow) -> CheckRow {
    CheckRow {
        kernel: format!("gradcheck {}", r.op),
        shapes: r.shapes,
        max_abs_err: r.rel_err,
        worst_ratio: r.rel_err / r.tolerance,
        rule: format!("rel {:.0e}", r.tolerance),
        pass: r.pass,
        note: r.note,
    }
}

pub fn run(args: CheckArgs) -> Result<()> {
    // The gradient checks come first: with `--only`, a family runs when
    // "gradcheck <family>" contains the filter (`--only gradcheck` runs them all).
    let select = |family: &str| args.only.as_deref().is_none_or(|only| format!("gradcheck {family}").contains(only));
    let mut rows: Vec<CheckRow> =
        if args.skip_gradcheck { Vec::new() } else { run_gradchecks(select).into_iter().map(gradcheck_row).collect() };
    if let Some(device) = open(args.device)? {
        println!("device: {}", device.describe());
        rows.extend(run_all(&device, args.only.as_deref()));
    }
    // A filter that selects nothing must not read as "0 rows, 0 failed".
    if let (Some(only), true) = (&args.only, rows.is_empty()) {
        let families: Vec<&str> = all_cases().iter().map(|(family, _)| *family).collect();
        return Err(Error::InvalidArgument(format!(
            "--only {only} matches no check on this device (kernel families: {}; `gradcheck` selects the gradient checks)",
            families.join(", ")
        )));
    }
    print!("{}", format_table(&rows));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    println!("{} rows, {failed} failed", rows.len());
    if failed == 0 { Ok(()) } else { Err(Error::Device(format!("{failed} of {} checks failed", rows.len()))) }
}
