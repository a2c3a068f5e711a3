//! Rotary-embedding launcher (kernels/rotary.cu): ModernBERT's q and k turned
//! by their positions, forward (sign +1) and backward (sign −1, the inverse
//! rotation). The cos/sin tables are made on the host in f64, as on the CPU.

use super::{expect, expect_float};
use crate::device::{DeviceBuffer, Elem, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 256;

/// The angles' cosines and sines, (P, D/2) each as f32, for positions 0..P:
/// angle = p · inv_freq[i] in f64, rounded once.
pub fn rotary_tables(positions: usize, inv_freq: &[f64]) -> (Vec<f32>, Vec<f32>) {
    let angles = (0..positions).flat_map(|p| inv_freq.iter().map(move |&f| p as f64 * f));
    angles.map(|a| (a.cos() as f32, a.sin() as f32)).unzip()
}

// x (rows, heads·2·half), positions (rows) u32, cos/sin (P, half) f32 ->
// y (rows, heads·2·half); `inverse` turns by the opposite angle
#[allow(clippy::too_many_arguments)] // x, y, the positions, both tables and the layout
pub fn rotary(
    x: &DeviceBuffer,
    y: &DeviceBuffer,
    positions: &DeviceBuffer,
    cos: &DeviceBuffer,
    sin: &DeviceBuffer,
    heads: usize,
    half: usize,
    inverse: bool,
) -> Result<()> {
    let rows = positions.len();
    let width = heads * 2 * half;
    if heads == 0 || half == 0 || x.len() != rows * width || !cos.len().is_multiple_of(half) {
        return Err(Error::shape("rotary", format!("x {x:?} with {rows} positions, {heads} heads of 2·{half}, table {cos:?}")));
    }
    expect_float("rotary", "y", y, x.len())?;
    expect("rotary", "positions", positions, rows, Elem::U32)?;
    expect("rotary", "cos", cos, cos.len(), Elem::F32)?;
    expect("rotary", "sin", sin, cos.len(), Elem::F32)?;
    if y.elem() != x.elem() {
        return Err(Error::shape("rotary", format!("x {x:?} and y {y:?} differ in dtype")));
    }
    let pairs = rows * heads * half;
    let kernel = format!("rotary_{}", x.elem().suffix());
    KernelArgs::new()
        .buf(x)
        .buf(positions)
        .buf(cos)
        .buf(sin)
        .buf(y)
        .len(rows)?
        .len(heads)?
        .len(half)?
        .f32(if inverse { -1.0 } else { 1.0 })
        .launch(x.device(), &kernel, LaunchShape::linear(elementwise_blocks(pairs, THREADS), THREADS))
}
