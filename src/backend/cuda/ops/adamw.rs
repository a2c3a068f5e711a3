//! Launchers for kernels/adamw.cu: the AdamW update (src/optim/adamw.rs) and
//! the global gradient norm for clipping (src/optim/clip.rs).
//!
//! One optimizer step on the device, with no host round trip:
//!
//! ```text
//! grad_norm(grads, max_norm, norm, scale)              // scale = clip factor (or 1)
//! for each parameter: adamw_update(master, grad, m, v, copy, step, Some(&scale))
//! ```
//!
//! A non-finite norm makes `scale` NaN, and adamw_update then leaves every
//! parameter and moment untouched (the CPU refuses such a step with an
//! error). Callers read `norm` when they log it, and stop on a non-finite one.

use super::expect;
use crate::device::Device;
use crate::device::{DeviceBuffer, Elem, KernelArgs, LaunchShape, SIM_MAX_GRID_STRIDE_BLOCKS, grid_stride_blocks};
use crate::error::{Error, Result};

const THREADS: u32 = 256;
/// grad_norm_partial_f32: threads per block, the fewest elements a thread
/// should sum before another block is worth it, and the most blocks per buffer.
const NORM_THREADS: u32 = 256;
const NORM_ELEMS_PER_THREAD: usize = 8;
const NORM_MAX_BLOCKS: usize = 512;
/// grad_norm_final_f32: one block.
const FINAL_THREADS: u32 = 1024;

/// One update's constants, computed on the host from the CPU's formulas
/// (adamw.rs, `Hyper::new`) in f64 and cast to f32, so CPU and GPU agree.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub decay_factor: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub step_size: f32,
    pub inv_sqrt_bias2: f32,
    pub eps: f32,
}

impl AdamWStep {
    /// `weight_decay` is this parameter's decay (0 for biases and LayerNorm
    /// weights, see `adamw::no_decay`); `step` is t after incrementing, as in
    /// `AdamW::update` (the first update is step 1; step 0 has no bias correction
    /// and gives an infinite step size).
    /// `betas` and `eps` are the optimizer's (plain numbers: the launcher
    /// sits below the optimizer).
    pub fn new(lr: f64, weight_decay: f64, betas: (f64, f64), eps: f64, step: u64) -> AdamWStep {
        let (beta1, beta2) = betas;
        let bias1 = 1.0 - beta1.powi(step as i32);
        let bias2 = 1.0 - beta2.powi(step as i32);
        AdamWStep {
            decay_factor: (1.0 - lr * weight_decay) as f32,
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            step_size: (lr / bias1) as f32,
            inv_sqrt_bias2: (1.0 / bias2.sqrt()) as f32,
            eps: eps as f32,
        }
    }
}

// master, grad, m, v (n) F32, updated in place; copy (n) F32 or BF16, written
// with the updated master (the working copy the kernels read); grad_scale (1)
// F32, a device scalar multiplying every gradient (the clip factor from
// grad_norm). A non-finite *grad_scale skips the update.
pub fn adamw_update(
    master: &DeviceBuffer,
    grad: &DeviceBuffer,
    m: &DeviceBuffer,
    v: &DeviceBuffer,
    copy: Option<&DeviceBuffer>,
    step: AdamWStep,
    grad_scale: Option<&DeviceBuffer>,
) -> Result<()> {
    const OP: &str = "adamw_update";
    let n = master.len();
    expect(OP, "master", master, n, Elem::F32)?;
    expect(OP, "grad", grad, n, Elem::F32)?;
    expect(OP, "m", m, n, Elem::F32)?;
    expect(OP, "v", v, n, Elem::F32)?;
    if let Some(s) = grad_scale {
        expect(OP, "grad_scale", s, 1, Elem::F32)?;
    }
    if let Some(c) = copy
        && c.len() != n
    {
        return Err(Error::shape(OP, format!("copy {c:?} for a master of {n} elements")));
    }
    // No copy: the f32 kernel with a null copy pointer.
    let kernel = match copy.map(DeviceBuffer::elem) {
        None | Some(Elem::F32) => "adamw_update_f32",
        Some(Elem::BF16) => "adamw_update_bf16",
        Some(other) => return Err(Error::shape(OP, format!("copy of {other:?}: expected F32 or BF16"))),
    };
    KernelArgs::new()
        .buf(master)
        .buf(grad)
        .buf(m)
        .buf(v)
        .ptr(copy.map_or(0, DeviceBuffer::ptr))
        .ptr(grad_scale.map_or(0, DeviceBuffer::ptr))
        .f32(step.decay_factor)
        .f32(step.beta1)
        .f32(step.beta2)
        .f32(step.one_minus_beta1)
        .f32(step.one_minus_beta2)
        .f32(step.step_size)
        .f32(step.inv_sqrt_bias2)
        .f32(step.eps)
        .len(n)?
        .launch(master.device(), kernel, LaunchShape::linear(grid_stride_blocks(master.device(), n, THREADS), THREADS))
}

/// Blocks of grad_norm_partial_f32 for a buffer of `n` elements: fixed by n
/// (and the kind of device) alone, so the partial sums (and the norm) are the
/// same on every run. The simulated device gets fewer, longer-striding blocks.
fn norm_blocks(device: &Device, n: usize) -> usize {
    let cap = if device.is_simulated() { SIM_MAX_GRID_STRIDE_BLOCKS as usize } else { NORM_MAX_BLOCKS };
    n.div_ceil(NORM_THREADS as usize * NORM_ELEMS_PER_THREAD).clamp(1, cap)
}

// grads: any number of F32 buffers of any lengths (empty ones are skipped)
// -> norm (1) F32 = sqrt(sum of every g²), scale (1) F32 =
// (max_norm > 0 && norm > max_norm) ? max_norm / (norm + 1e-6) : 1, NaN when
// the norm is not finite.
//
// Deterministic: each buffer's blocks write f32 partial sums (f32 per thread,
// then per block) into a scratch in buffer order; one block adds them in a
// fixed order in f64 and computes the norm and scale in f64.
pub fn grad_norm(grads: &[&DeviceBuffer], max_norm: f32, norm: &DeviceBuffer, scale: &DeviceBuffer) -> Result<()> {
    const OP: &str = "grad_norm";
    expect(OP, "norm", norm, 1, Elem::F32)?;
    expect(OP, "scale", scale, 1, Elem::F32)?;
    for (i, g) in grads.iter().enumerate() {
        expect(OP, &format!("grads[{i}]"), g, g.len(), Elem::F32)?;
    }
    let device = norm.device();
    let count: usize = grads.iter().filter(|g| !g.is_empty()).map(|g| norm_blocks(device, g.len())).sum();
    let partials = DeviceBuffer::uninit(device, count, Elem::F32)?;
    let mut offset = 0;
    for g in grads.iter().filter(|g| !g.is_empty()) {
        let blocks = norm_blocks(device, g.len());
        KernelArgs::new().buf(g).len(g.len())?.ptr(partials.ptr_at(offset)).launch(
            device,
            "grad_norm_partial_f32",
            LaunchShape::linear(blocks as u32, NORM_THREADS),
        )?;
        offset += blocks;
    }
    KernelArgs::new().buf(&partials).len(count)?.f32(max_norm).buf(norm).buf(scale).launch(
        device,
        "grad_norm_final_f32",
        LaunchShape::linear(1, FINAL_THREADS),
    )
}
