//! The CUDA backend: a device interface with a real GPU implementation
//! (cudarc + cuBLASLt) and a simulated one (the same kernels compiled as
//! C++), launchers for every kernel, and the parity checks `berth check`
//! runs against the CPU reference.

pub mod check;
pub mod device;
pub mod kernels;
pub mod ops;
pub mod probe;
pub mod real;
pub mod sim;

pub use device::{Device, DeviceBuffer, Elem, Epilogue, Gemm, KernelArgs, LaunchShape};

use crate::error::{Error, Result};

/// Which device `--device` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// CUDA when a GPU is there, otherwise the CPU (and it says so).
    Auto,
    Cpu,
    Cuda,
    /// The simulated CUDA device: every kernel run on the CPU, for testing.
    Sim,
}

/// Opens the device a choice names; None means the CPU path. `Auto` without
/// a usable GPU prints why it falls back.
pub fn open(choice: DeviceChoice) -> Result<Option<Device>> {
    match choice {
        DeviceChoice::Cpu => Ok(None),
        DeviceChoice::Sim => sim::SimDevice::create().map(Some),
        DeviceChoice::Cuda => real::CudaDevice::create(0).map(Some).map_err(|e| Error::Device(format!("--device cuda: {e}"))),
        DeviceChoice::Auto => match real::CudaDevice::create(0) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                eprintln!("device auto: using the CPU ({e})");
                Ok(None)
            }
        },
    }
}
