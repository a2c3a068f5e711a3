//! Dropout launchers (kernels/dropout.cu): the CPU's masks, drawn on the
//! device from the same counter-based RNG (DESIGN.md, Decision 5).

use super::expect_float;
use crate::device::{DeviceBuffer, KernelArgs, LaunchShape, elementwise_blocks};
use crate::error::{Error, Result};
use crate::rng;

const THREADS: u32 = 256;

/// One dropout site in one step. `p` is f64, as in the model config and the
/// CPU's `dropout`, so the threshold and the scale round exactly as there.
#[derive(Clone, Copy, Debug)]
pub struct DropoutParams {
    pub p: f64,
    pub stream_key: u64,
}

impl DropoutParams {
    /// The site (seed, stream) of `autograd::basic::DropoutKey`.
    pub fn new(p: f64, seed: u64, stream: u64) -> DropoutParams {
        DropoutParams { p, stream_key: rng::stream_key(seed, stream) }
    }

    /// Element i is kept when `rng::bits24(stream_key, i) >= threshold`.
    pub fn threshold(&self) -> u32 {
        (self.p * (1u32 << 24) as f64).round() as u32
    }

    /// What kept elements are multiplied by: the CPU's `T::from_f64(1 / (1 − p))` for T = f32.
    pub fn keep_scale(&self) -> f32 {
        (1.0 / (1.0 - self.p)) as f32
    }

    fn validate(&self, op: &'static str) -> Result<()> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(Error::shape(op, format!("dropout probability {} must be in [0, 1)", self.p)));
        }
        Ok(())
    }
}

// x (n) -> y (n), same dtype; y may be x (in place)
pub fn dropout_fwd(x: &DeviceBuffer, y: &DeviceBuffer, params: DropoutParams) -> Result<()> {
    dropout_launch("dropout_fwd", x, None, y, params, u32::MAX)
}

// dy (n) -> dx (n): the forward's mask applied to dy (same kernel, same key)
pub fn dropout_bwd(dy: &DeviceBuffer, dx: &DeviceBuffer, params: DropoutParams) -> Result<()> {
    dropout_launch("dropout_bwd", dy, None, dx, params, u32::MAX)
}

// x (n), residual (n) -> y (n) = dropout(x) + residual, same dtype; y may be x or residual
pub fn dropout_add_fwd(x: &DeviceBuffer, residual: &DeviceBuffer, y: &DeviceBuffer, params: DropoutParams) -> Result<()> {
    dropout_launch("dropout_add_fwd", x, Some(residual), y, params, u32::MAX)
}

/// The launch behind all three, with the grid capped at `max_blocks` (the
/// public launchers pass no cap beyond `elementwise_blocks`'s; the check
/// table passes a small one so the simulator runs the grid-stride loop).
pub(crate) fn dropout_launch(
    op: &'static str,
    x: &DeviceBuffer,
    residual: Option<&DeviceBuffer>,
    y: &DeviceBuffer,
    params: DropoutParams,
    max_blocks: u32,
) -> Result<()> {
    let n = x.len();
    expect_float(op, "x", x, n)?;
    expect_float(op, "y", y, n)?;
    let mut same_type = y.elem() == x.elem();
    if let Some(r) = residual {
        expect_float(op, "residual", r, n)?;
        same_type &= r.elem() == x.elem();
    }
    if !same_type {
        return Err(Error::shape(op, format!("x {x:?}, residual {residual:?}, y {y:?} differ in dtype")));
    }
    params.validate(op)?;
    // One thread per pair of elements (one hash serves both).
    let blocks = elementwise_blocks(n.div_ceil(2), THREADS).min(max_blocks.max(1));
    let shape = LaunchShape::linear(blocks, THREADS);
    let mut args = KernelArgs::new().buf(x);
    let kernel = match residual {
        Some(r) => {
            args = args.buf(r);
            format!("dropout_add_fwd_{}", x.elem().suffix())
        }
        None => format!("dropout_fwd_{}", x.elem().suffix()),
    };
    args.buf(y).len(n)?.u64(params.stream_key).u32(params.threshold()).f32(params.keep_scale()).launch(x.device(), &kernel, shape)
}
