//! GELU launchers (kernels/gelu.cu): exact erf form, forward and backward.

use super::expect_float;
use crate::device::{DeviceBuffer, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 256;

// x (n) -> y (n), same dtype
pub fn gelu_fwd(x: &DeviceBuffer, y: &DeviceBuffer) -> Result<()> {
    let n = x.len();
    expect_float("gelu_fwd", "y", y, n)?;
    if y.elem() != x.elem() {
        return Err(Error::shape("gelu_fwd", format!("x {x:?} and y {y:?} differ in dtype")));
    }
    let kernel = format!("gelu_fwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(y).len(n)?.launch(x.device(), &kernel, LaunchShape::linear(elementwise_blocks(n, THREADS), THREADS))
}

// x (n), dy (n) -> dx (n), written
pub fn gelu_bwd(x: &DeviceBuffer, dy: &DeviceBuffer, dx: &DeviceBuffer) -> Result<()> {
    let n = x.len();
    expect_float("gelu_bwd", "dy", dy, n)?;
    expect_float("gelu_bwd", "dx", dx, n)?;
    if dy.elem() != x.elem() || dx.elem() != x.elem() {
        return Err(Error::shape("gelu_bwd", format!("x {x:?}, dy {dy:?}, dx {dx:?} differ in dtype")));
    }
    let kernel = format!("gelu_bwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(dy).buf(dx).len(n)?.launch(
        x.device(),
        &kernel,
        LaunchShape::linear(elementwise_blocks(n, THREADS), THREADS),
    )
}

// x (rows, 2I) -> y (rows, I): GELU(input half) · gate half, same dtype
pub fn geglu_fwd(x: &DeviceBuffer, y: &DeviceBuffer, inner: usize) -> Result<()> {
    if inner == 0 || !x.len().is_multiple_of(2 * inner) {
        return Err(Error::shape("geglu_fwd", format!("x {x:?} is not rows of 2·{inner}")));
    }
    let n = x.len() / 2;
    expect_float("geglu_fwd", "y", y, n)?;
    if y.elem() != x.elem() {
        return Err(Error::shape("geglu_fwd", format!("x {x:?} and y {y:?} differ in dtype")));
    }
    let kernel = format!("geglu_fwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(y).len(n)?.len(inner)?.launch(
        x.device(),
        &kernel,
        LaunchShape::linear(elementwise_blocks(n, THREADS), THREADS),
    )
}

// x (rows, 2I), dy (rows, I) -> dx (rows, 2I), written
pub fn geglu_bwd(x: &DeviceBuffer, dy: &DeviceBuffer, dx: &DeviceBuffer, inner: usize) -> Result<()> {
    if inner == 0 || !x.len().is_multiple_of(2 * inner) {
        return Err(Error::shape("geglu_bwd", format!("x {x:?} is not rows of 2·{inner}")));
    }
    let n = x.len() / 2;
    expect_float("geglu_bwd", "dy", dy, n)?;
    expect_float("geglu_bwd", "dx", dx, x.len())?;
    if dy.elem() != x.elem() || dx.elem() != x.elem() {
        return Err(Error::shape("geglu_bwd", format!("x {x:?}, dy {dy:?}, dx {dx:?} differ in dtype")));
    }
    let kernel = format!("geglu_bwd_{}", x.elem().suffix());
    KernelArgs::new().buf(x).buf(dy).buf(dx).len(n)?.len(inner)?.launch(
        x.device(),
        &kernel,
        LaunchShape::linear(elementwise_blocks(n, THREADS), THREADS),
    )
}
