//! The CUDA backend: a launcher for every kernel in `kernels/*.cu` and the
//! cuBLASLt GEMMs, on any device that implements `crate::device::DeviceApi`
//! (the real GPU and the simulated one share them).

mod backend;
pub mod ops;

pub use backend::Cuda;
