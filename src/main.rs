//! The `berth` binary: parses the command line and reports errors in one line.

use clap::Parser;

// Activations are allocated and freed every step; mimalloc keeps freed pages
// for reuse, where the system allocator returns large blocks to the kernel
// and pays page faults to get them back (about 10% of a CPU forward pass).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = berth::cli::Cli::parse();
    match berth::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
