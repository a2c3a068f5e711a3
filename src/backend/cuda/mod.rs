//! The CUDA backend. For now this holds the kernels embedded by build.rs;
//! the device interface (real via cudarc, simulated via the same .cu files
//! compiled as C++) is the CUDA engine issue's work.

pub mod kernels;
pub mod probe;
