//! Backends. The CPU backend defines the semantics of every op; the CUDA
//! backend (kernels/*.cu + cuBLASLt) must match it.

pub mod cpu;
pub mod cuda;
