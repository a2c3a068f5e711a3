//! What `berth check` and `berth device-info` run: the CPU gradient checks
//! of every op and of whole tiny models (f64, central differences), every
//! CUDA kernel's parity with the CPU reference on a device, and the probe of
//! a real CUDA stack.

pub mod gradcheck;
pub mod kernels;
pub mod probe;
