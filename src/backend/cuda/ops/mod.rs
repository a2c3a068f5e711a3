//! Launchers: one file per kernel family, each turning shapes and device
//! buffers into a launch of the matching `kernels/<family>.cu` kernel. Each
//! launcher checks its shapes and names the op in its errors.

pub mod adamw;
pub mod attention;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod gelu;
pub mod gemm;
pub mod layernorm;
pub mod loss;
pub mod relative_attention;
pub mod rotary;
pub mod rows;

use crate::device::{DeviceBuffer, Elem};
use crate::error::{Error, Result};

/// Checks that a buffer holds `len` elements of a float type (F32 or BF16).
pub fn expect_float(op: &'static str, what: &str, b: &DeviceBuffer, len: usize) -> Result<()> {
    if !matches!(b.elem(), Elem::F32 | Elem::BF16) || b.len() != len {
        return Err(Error::shape(op, format!("{what}: expected {len} f32/bf16 elements, got {b:?}")));
    }
    Ok(())
}

/// Checks that a buffer holds `len` elements of `elem`.
pub fn expect(op: &'static str, what: &str, b: &DeviceBuffer, len: usize, elem: Elem) -> Result<()> {
    if b.elem() != elem || b.len() != len {
        return Err(Error::shape(op, format!("{what}: expected {len} {elem:?} elements, got {b:?}")));
    }
    Ok(())
}
