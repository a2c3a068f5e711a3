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
